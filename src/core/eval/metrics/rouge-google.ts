/**
 * Google's `rouge_score` (`RougeScorer`), used by NIAH (rouge1 with `use_stemmer=True`, §8.3) and by InfiniteBench
 * through HF `evaluate` ("rougeLsum", no stemmer, max over references, §8.2). Its rules, kept:
 * - tokenize: lowercase, every run of characters outside [a-z0-9] → one space, split; tokens longer than 3
 *   characters are Porter-stemmed when asked; tokens not matching ^[a-z0-9]+$ are dropped;
 * - rougeN: n-gram multiset overlap, P = overlap / max(|pred n-grams|, 1), R likewise, F = 2PR / (P + R) or 0;
 * - rougeLsum: sentences are the non-empty lines (split on "\n"); summary-level LCS with the union of LCS positions
 *   per reference line and token counters that stop double counting (as ROUGE-1.5.5).
 *
 *   googleRouge1F('The cat sat.', 'the cats sat', true)  // stems: [the, cat, sat] vs [the, cat, sat] → 1
 */
import { counter } from '../py.js';
import { porterStem } from './porter-stemmer.js';

export interface GoogleScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

/** tokenize.tokenize(text, stemmer). */
export function googleTokenize(text: string, useStemmer: boolean): string[] {
  const spaced = text.toLowerCase().replace(/[^a-z0-9]+/g, ' ');
  let tokens = spaced.split(/\s+/);
  if (useStemmer) tokens = tokens.map((t) => (t.length > 3 ? porterStem(t) : t));
  return tokens.filter((t) => /^[a-z0-9]+$/.test(t));
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0.0;
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const grams: string[] = [];
  for (let i = 0; i + n <= tokens.length; i++) grams.push(tokens.slice(i, i + n).join(' '));
  return counter(grams);
}

/** _score_ngrams(target_ngrams, prediction_ngrams). */
export function googleRougeN(target: string, prediction: string, n: number, useStemmer: boolean): GoogleScore {
  const t = ngrams(googleTokenize(target, useStemmer), n);
  const p = ngrams(googleTokenize(prediction, useStemmer), n);
  let overlap = 0;
  for (const [g, c] of t) overlap += Math.min(c, p.get(g) ?? 0);
  let tCount = 0;
  for (const c of t.values()) tCount += c;
  let pCount = 0;
  for (const c of p.values()) pCount += c;
  const precision = overlap / Math.max(pCount, 1);
  const recall = overlap / Math.max(tCount, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** ROUGE-1 F as `RougeScorer(['rouge1'], use_stemmer).score(target, prediction)['rouge1'].fmeasure`. */
export function googleRouge1F(target: string, prediction: string, useStemmer: boolean): number {
  return googleRougeN(target, prediction, 1, useStemmer).fmeasure;
}

function lcsTable(ref: readonly string[], can: readonly string[]): Int32Array[] {
  const t = Array.from({ length: ref.length + 1 }, () => new Int32Array(can.length + 1));
  for (let i = 1; i <= ref.length; i++) {
    for (let j = 1; j <= can.length; j++) {
      t[i][j] = ref[i - 1] === can[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
    }
  }
  return t;
}

/** _backtrack_norec: indices into ref of one LCS (left first on ties: t[i][j-1] > t[i-1][j] moves left). */
function lcsIndices(ref: readonly string[], can: readonly string[]): number[] {
  const t = lcsTable(ref, can);
  let i = ref.length;
  let j = can.length;
  const lcs: number[] = [];
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      lcs.push(i - 1);
      i--;
      j--;
    } else if (t[i][j - 1] > t[i - 1][j]) j--;
    else i--;
  }
  return lcs.reverse();
}

/** _summary_level_lcs(ref_sent, can_sent) on tokenized sentences. */
export function summaryLevelLcs(refSents: readonly string[][], canSents: readonly string[][]): GoogleScore {
  const zero = { precision: 0, recall: 0, fmeasure: 0 };
  if (refSents.length === 0 || canSents.length === 0) return zero;
  const m = refSents.reduce((a, s) => a + s.length, 0);
  const n = canSents.reduce((a, s) => a + s.length, 0);
  if (!n || !m) return zero;
  const cntR = counter(refSents.flat());
  const cntC = counter(canSents.flat());
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const i of lcsIndices(r, c)) union.add(i);
    for (const i of [...union].sort((a, b) => a - b)) {
      const tok = r[i];
      if ((cntC.get(tok) ?? 0) > 0 && (cntR.get(tok) ?? 0) > 0) {
        hits += 1;
        cntC.set(tok, cntC.get(tok)! - 1);
        cntR.set(tok, cntR.get(tok)! - 1);
      }
    }
  }
  const recall = hits / m;
  const precision = hits / n;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** rougeLsum of one target: lines (split on "\n", empty ones dropped) tokenized separately. */
export function googleRougeLsum(target: string, prediction: string, useStemmer: boolean): GoogleScore {
  const sents = (text: string) =>
    text
      .split('\n')
      .filter((s) => s.length > 0)
      .map((s) => googleTokenize(s, useStemmer));
  return summaryLevelLcs(sents(target), sents(prediction));
}

/**
 * HF `evaluate.load("rouge").compute(predictions=[pred], references=[labels], use_aggregator=False)["rougeLsum"][0]`:
 * with a list of labels it is `score_multi`, the score of the label with the highest F (first one on ties).
 */
export function hfRougeLsumF(prediction: string, labels: readonly string[] | string): number {
  const targets = typeof labels === 'string' ? [labels] : labels;
  let best = -Infinity;
  for (const t of targets) best = Math.max(best, googleRougeLsum(t, prediction, false).fmeasure);
  return targets.length === 0 ? 0 : best;
}
