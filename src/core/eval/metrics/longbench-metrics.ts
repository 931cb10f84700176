/**
 * The per-answer metrics of LongBench's `metrics.py` that are not F1 or ROUGE: classification (with its
 * list-mutation quirk), code similarity, passage count and passage retrieval. Each takes (prediction, one gold
 * answer) as `dataset2metric[dataset](prediction, ground_truth, all_classes=...)` does.
 */
import { CommvqError } from '../../errors.js';
import { PY_DIGIT, pyLstrip } from '../py.js';
import { fuzzRatio, type FuzzBackend } from './fuzz.js';

/**
 * classification_score: every class name that is a substring of the prediction, in all_classes order; then, while
 * iterating that same list, remove each match that is a substring of the gold but not equal to it. Python's list
 * iterator walks by index, so removing the current element skips the next one — reproduced literally, as is
 * `remove` taking the first equal element. Score = 1/len(list) if the gold is in the list, else 0. (The reference's
 * `if em_match_list != 0` is always true, so its difflib fallback never runs.)
 *
 *   classificationScore('Abbreviation or Entity', 'Entity', ['Abbreviation', 'Entity', 'Entity type'])  // 1/2
 */
export function classificationScore(prediction: string, groundTruth: string, allClasses: readonly string[] | null): number {
  if (allClasses === null) throw new CommvqError('classification score needs all_classes, and the record has none');
  const matches = allClasses.filter((c) => prediction.includes(c));
  for (let i = 0; i < matches.length; i++) {
    const term = matches[i];
    if (groundTruth.includes(term) && term !== groundTruth) matches.splice(matches.indexOf(term), 1);
  }
  return matches.includes(groundTruth) ? 1.0 / matches.length : 0.0;
}

/**
 * The line code_sim_score compares: the first line of `prediction.lstrip("\n")` that contains none of "`", "#",
 * "//"; "" when every line does.
 */
export function codeSimLine(prediction: string): string {
  for (const line of pyLstrip(prediction, '\n').split('\n')) {
    if (!line.includes('`') && !line.includes('#') && !line.includes('//')) return line;
  }
  return '';
}

/** code_sim_score: fuzz.ratio(selected line, gold) / 100. */
export function codeSimScore(prediction: string, groundTruth: string, backend: FuzzBackend = 'levenshtein'): number {
  return fuzzRatio(codeSimLine(prediction), groundTruth, backend) / 100;
}

const DIGIT_RUNS = new RegExp(`${PY_DIGIT}+`, 'gu');

/** count_score: the share of the numbers (`\d+`) in the prediction that equal the gold; 0 when there are none. */
export function countScore(prediction: string, groundTruth: string): number {
  const numbers = prediction.match(DIGIT_RUNS) ?? [];
  const right = numbers.filter((x) => x === groundTruth).length;
  return numbers.length === 0 ? 0.0 : right / numbers.length;
}

/**
 * retrieval_score (`Paragraph (\d+)`) and retrieval_zh_score (`段落(\d+)`): the paragraph number is read from the
 * gold, then scored like count_score. A gold without that pattern makes the reference raise IndexError (aborting
 * the whole evaluation); here it is an error naming the gold.
 */
export function retrievalScore(prediction: string, groundTruth: string, language: 'en' | 'zh' = 'en'): number {
  const pattern = language === 'en' ? new RegExp(`Paragraph (${PY_DIGIT}+)`, 'u') : new RegExp(`段落(${PY_DIGIT}+)`, 'u');
  const m = pattern.exec(groundTruth);
  if (!m) throw new CommvqError(`retrieval score: the gold answer ${JSON.stringify(groundTruth.slice(0, 60))} names no paragraph`);
  return countScore(prediction, m[1]);
}
