/**
 * Every numeric option, checked one way: the text is a plain decimal number (no NaN, Infinity, hex or empty string),
 * finite, whole where the option counts things, and inside its range. A bad value is an OptionError naming the option,
 * so the command line prints it under its flag (`--lr abc: not a number`) and a library caller reads the fields.
 *
 *   parseNumberOption('lr', '1e-3', { above: 0, max: 1 })        // 0.001
 *   parseNumberOption('seqLen', '0', { integer: true, min: 1 })   // throws OptionError: seqLen 0: must be at least 1
 */
import { OptionError } from '../errors.js';

/** What a numeric option accepts: `integer` for counts, `min`/`max` inclusive bounds, `above` an exclusive lower bound. */
export interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
  above?: number;
}

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;

/** `text` as a number if it is a plain decimal one (`1e400` is Infinity), else NaN: for numberProblem to judge. */
export function decimalValue(text: string): number {
  return DECIMAL.test(text.trim()) ? Number(text) : NaN;
}

/** `text` as a number that satisfies `rule`, or an OptionError on `option` quoting `text`. */
export function parseNumberOption(option: string, text: string, rule: NumberRule = {}): number {
  const value = decimalValue(text);
  const problem = numberProblem(value, rule);
  if (problem) throw new OptionError(option, text, problem);
  return value;
}

/** What is wrong with `value` under `rule`, or undefined. Also for numbers that arrive already parsed (library callers). */
export function numberProblem(value: number, rule: NumberRule): string | undefined {
  if (Number.isNaN(value)) return rule.integer ? 'not a whole number' : 'not a number';
  if (!Number.isFinite(value)) return 'not a finite number';
  if (rule.integer && !Number.isInteger(value)) return 'not a whole number';
  if (rule.integer && !Number.isSafeInteger(value)) return 'too large';
  if (rule.above !== undefined && !(value > rule.above)) return `must be above ${rule.above}`;
  if (rule.min !== undefined && value < rule.min) return `must be at least ${rule.min}`;
  if (rule.max !== undefined && value > rule.max) return `must be at most ${rule.max}`;
  return undefined;
}

/** Throws an OptionError unless `value` (already a number) satisfies `rule`. */
export function checkNumberOption(option: string, value: number, rule: NumberRule): void {
  const problem = numberProblem(value, rule);
  if (problem) throw new OptionError(option, String(value), problem);
}
