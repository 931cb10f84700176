/**
 * GSM8K answer extraction and exact match (our protocol). The model's final number is, in order of trust:
 *   1. "#### N" (the dataset's own answer format);
 *   2. "The answer is N" / "The final answer is N" / "answer: N" (the CoT exemplars' format), the last one given;
 *   3. otherwise the last number in the text (lm-evaluation-harness's "flexible extract").
 * A number loses its thousands commas, a leading $, a trailing period and any unit or % after it; "−" and "-" are
 * minus. Exact match compares the numbers' values (72, 72.0 and 72.00 are equal). The gold number is what follows
 * "####" in the dataset's answer.
 *
 *   extractGsm8kAnswer('... so she pays $1,080. The answer is $1,080.')   // { value: '1080', rule: 'answer-is' }
 */
import { CommvqError } from '../../errors.js';

export type Gsm8kRule = 'hashes' | 'answer-is' | 'last-number' | 'none';

export interface Gsm8kExtraction {
  /** the number as text without commas, $ or units ('-3.5'), null when none was found */
  value: string | null;
  rule: Gsm8kRule;
}

const NUMBER = String.raw`[-−]?\$?\s?[-−]?\d[\d,]*(?:\.\d+)?|[-−]?\$?\.\d+`;
const HASHES = new RegExp(String.raw`####\s*(${NUMBER})`);
const ANSWER_IS = new RegExp(String.raw`(?:the\s+(?:final\s+)?answer\s+is|answer\s*:)\s*:?\s*\**\s*(${NUMBER})`, 'gi');
const ANY_NUMBER = new RegExp(NUMBER, 'g');

/** '$1,080.' → '1080'; '−3' → '-3'; '.5' → '0.5'. */
export function normalizeGsm8kNumber(text: string): string {
  let s = text.replace(/[\s$,]/g, '').replace(/−/g, '-');
  const negative = s.startsWith('-');
  s = s.replace(/-/g, '');
  if (s.startsWith('.')) s = `0${s}`;
  s = s.replace(/\.$/, '');
  return negative ? `-${s}` : s;
}

export function extractGsm8kAnswer(text: string): Gsm8kExtraction {
  const hashes = HASHES.exec(text);
  if (hashes) return { value: normalizeGsm8kNumber(hashes[1]!), rule: 'hashes' };
  const said = [...text.matchAll(ANSWER_IS)];
  if (said.length > 0) return { value: normalizeGsm8kNumber(said.at(-1)![1]!), rule: 'answer-is' };
  const numbers = [...text.matchAll(ANY_NUMBER)];
  if (numbers.length > 0) return { value: normalizeGsm8kNumber(numbers.at(-1)![0]), rule: 'last-number' };
  return { value: null, rule: 'none' };
}

/** The gold number of a dataset answer ("…\n#### 72"). */
export function gsm8kGold(answer: string, where: string): string {
  const m = HASHES.exec(answer);
  if (!m) throw new CommvqError(`${where}: the answer has no '#### N' line`, 'give GSM8K as published (openai/gsm8k: question, answer)');
  return normalizeGsm8kNumber(m[1]!);
}

/** Exact match of two normalized numbers, by value. */
export function gsm8kCorrect(pred: string | null, gold: string): boolean {
  if (pred === null) return false;
  const [a, b] = [Number(pred), Number(gold)];
  return Number.isFinite(a) && Number.isFinite(b) ? a === b : pred === gold;
}
