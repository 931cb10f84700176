/**
 * NIAH scoring and results (§8.3 steps 4–6). The reference's score is ROUGE-1 F (Google rouge_score, Porter
 * stemmer) between the needle and the stripped response, × 10, and 0 for an empty response. 'exact' is ours: 10
 * when the needle's sentence appears in the response (lowercased, punctuation and spacing ignored), else 0;
 * 'contains' is RULER's string_match_all: the fraction of the expected values (a varied needle's digits or words, or
 * the needle itself) found in the lowercased response, × 10. With several needles asked (RULER's variants), exact
 * needs every asked sentence and rouge1 compares with them joined.
 * Results carry the model and the cache mode, and their file names do too, so runs never overwrite each other.
 *
 *   niahScore('Eat a sandwich in Dolores Park.', 'rouge1')  // ≈ 5.8
 */
import { CommvqError } from '../../errors.js';
import { googleRouge1F } from '../metrics/rouge-google.js';
import { pyStrip } from '../py.js';
import { NIAH_NEEDLE } from './needle.js';

export type NiahScorer = 'rouge1' | 'exact' | 'contains';

export function parseNiahScorer(name: string): NiahScorer {
  if (name === 'rouge1' || name === 'exact' || name === 'contains') return name;
  throw new CommvqError(`unknown NIAH scorer '${name}'`, 'scorers: rouge1 (the reference), exact, contains (RULER)');
}

/** What a cell's answer is scored against: the asked needles' sentences, and the values they carry. */
export interface NiahExpected {
  asked: readonly string[];
  answers: readonly string[];
}

function normalizeForRecall(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/** The response as the reference keeps it: decoded without special tokens, then stripped. */
export function niahResponse(decoded: string): string {
  return pyStrip(decoded);
}

/** Score in 0..10 of a (stripped) response. */
export function niahScore(response: string, scorer: NiahScorer, needle = NIAH_NEEDLE): number {
  return niahScoreExpected(response, scorer, { asked: [needle], answers: [needle.trim()] });
}

/**
 * Score in 0..10 of a response against a cell's expected needles and values.
 *
 *   niahScoreExpected('4830127 and 1120934', 'contains', { asked: [...], answers: ['4830127', '5512380'] })   // 5
 */
export function niahScoreExpected(response: string, scorer: NiahScorer, expected: NiahExpected): number {
  if (response.length === 0) return 0.0;
  if (scorer === 'rouge1') return googleRouge1F(expected.asked.join(' '), response, true) * 10;
  if (scorer === 'contains') {
    const r = response.toLowerCase();
    return (10 * expected.answers.filter((a) => r.includes(a.toLowerCase())).length) / expected.answers.length;
  }
  const said = ` ${normalizeForRecall(response)} `;
  return expected.asked.every((n) => said.includes(` ${normalizeForRecall(n)} `)) ? 10 : 0;
}

/**
 * What a prediction record is scored against: the needles and values it records (varied needles, RULER's variants),
 * else the run's one needle.
 */
export function niahRecordExpected(record: Readonly<Record<string, unknown>>, needle: string): NiahExpected {
  if (Array.isArray(record.asked) && Array.isArray(record.answers)) return { asked: record.asked.map(String), answers: record.answers.map(String) };
  return { asked: [needle], answers: [needle.trim()] };
}

/** One cell's result, as written to `<run>/len_<L>_depth_<d>.json`. */
export interface NiahCellResult {
  id: string;
  model: string;
  /** the cache mode and its settings, e.g. "dense" or "commvq-2bit" */
  cache: string;
  context_length: number;
  depth_percent: number;
  version: 1;
  needle: string;
  model_response: string;
  score: number;
  scorer: NiahScorer;
  /** where the needle starts in the context, in tokens, and where the depth pointed */
  insertion_point: number;
  target_point: number;
  prompt_tokens: number;
  test_duration_seconds?: number;
}

/** A file-name-safe key for (model, cache): `<model folder name>__<cache>`. */
export function niahRunKey(model: string, cache: string): string {
  const base = model.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? model;
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_');
  return `${safe(base)}__${safe(cache)}`;
}
