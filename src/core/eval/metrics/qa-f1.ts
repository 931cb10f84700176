/**
 * Token F1 of the SQuAD family as LongBench's `metrics.py` and InfiniteBench's `compute_scores.py` compute it:
 * lowercase → drop ASCII punctuation → articles `\b(a|an|the)\b` become a space → collapse whitespace; then the
 * multiset overlap of whitespace tokens. The Chinese variant (InfiniteBench) is a character F1 after removing
 * ASCII and CJK punctuation and all whitespace.
 *
 *   qaF1Score('The cat sat.', 'a cat')  // tokens [cat, sat] vs [cat] → P 1/2, R 1 → 2/3
 */
import { PY_WORD_END, PY_WORD_START, codePoints, counter, pyCollapse, pySplit } from '../py.js';

const ASCII_PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;
const ARTICLES = new RegExp(`${PY_WORD_START}(?:a|an|the)${PY_WORD_END}`, 'gu');
const CN_PUNCTUATION = '！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.';

/** normalize_answer: lower, remove punctuation, articles → ' ', collapse whitespace. */
export function normalizeAnswer(s: string): string {
  return pyCollapse(s.toLowerCase().replace(ASCII_PUNCTUATION, '').replace(ARTICLES, ' '));
}

/** f1_score over two token lists (multiset overlap; 0 when nothing overlaps). */
export function f1Score(prediction: readonly string[], groundTruth: readonly string[]): number {
  const gold = counter(groundTruth);
  let numSame = 0;
  for (const [tok, n] of counter(prediction)) numSame += Math.min(n, gold.get(tok) ?? 0);
  if (numSame === 0) return 0;
  const precision = (1.0 * numSame) / prediction.length;
  const recall = (1.0 * numSame) / groundTruth.length;
  return (2 * precision * recall) / (precision + recall);
}

/** qa_f1_score(prediction, ground_truth): F1 of the normalised whitespace tokens. */
export function qaF1Score(prediction: string, groundTruth: string): number {
  return f1Score(pySplit(normalizeAnswer(prediction)), pySplit(normalizeAnswer(groundTruth)));
}

/** normalize_zh_answer: lower, remove ASCII and CJK punctuation, remove all whitespace. */
export function normalizeZhAnswer(s: string): string {
  const punct = new Set(codePoints(CN_PUNCTUATION));
  const kept = codePoints(s.toLowerCase()).filter((ch) => !punct.has(ch) && !ASCII_PUNCTUATION_SET.has(ch));
  return pySplit(kept.join('')).join('');
}

const ASCII_PUNCTUATION_SET = new Set(codePoints('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'));

/** InfiniteBench's qa_f1_score_zh for one label: character F1 after normalize_zh_answer. */
export function zhCharF1(prediction: string, groundTruth: string): number {
  return f1Score(codePoints(normalizeZhAnswer(prediction)), codePoints(normalizeZhAnswer(groundTruth)));
}
