/**
 * The comma-list flags several commands share, parsed one way everywhere: bit widths (`--bits 1,2`: train-key,
 * train-value, measure-memory, pipeline) and context lengths (`8k,32k,128k`: measure-memory --context, pipeline
 * --memory-context). Repeats are dropped, order is kept; a bad part is an OptionError quoting the whole value.
 *
 *   parseBitsList('1,2')            // [1, 2]
 *   parseContextList('8k,128k')     // [8192, 131072]
 */
import { BITS_PROBLEM, toBits, type Bits } from '../core/commvq/geometry.js';
import { OptionError } from '../core/errors.js';

/** `1`, `2` or `1,2`: every width once; anything else gets the one bits message (geometry.ts). */
export function parseBitsList(text: string, option = 'bits'): Bits[] {
  return parseList(text, option, (part) => {
    try {
      return toBits(part);
    } catch {
      return undefined;
    }
  }, () => BITS_PROBLEM);
}

/** Context lengths in tokens: `8k,32k,128k` → [8192, 32768, 131072] (k = 1024, m = 1024²; plain numbers too). */
export function parseContextList(text: string, option = 'context'): number[] {
  return parseList(text, option, (part) => {
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(part);
    const n = m ? Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]!) ? 1024 : 1024 ** 2) : NaN;
    return Number.isInteger(n) && n > 0 ? n : undefined;
  }, (part) => `'${part}' is not a positive whole number, e.g. 8k or 32768`);
}

/** Batch sizes: `1,8,64`. */
export function parseBatchList(text: string, option = 'batch'): number[] {
  return parseList(text, option, (part) => (/^\d+$/.test(part) && Number(part) > 0 ? Number(part) : undefined), (part) => `'${part}' is not a positive whole number`);
}

/** Each comma-separated part through `parse`; a part it refuses (undefined) is answered by `problem`. */
function parseList<T>(text: string, option: string, parse: (part: string) => T | undefined, problem: (part: string) => string): T[] {
  const out: T[] = [];
  for (const part of text.split(',').map((p) => p.trim())) {
    const v = parse(part);
    if (v === undefined) throw new OptionError(option, text, problem(part));
    if (!out.includes(v)) out.push(v);
  }
  return out;
}
