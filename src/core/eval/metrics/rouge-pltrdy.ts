/**
 * ROUGE of the `rouge` PyPI package by pltrdy (version 1.0.1, `exclusive=True`), the one LongBench's `rouge_score`
 * calls as `Rouge().get_scores([pred], [gold], avg=True)["rouge-l"]["f"]`, any exception → 0. Its rules, kept:
 * - sentences = pieces of `text.split(".")` that are non-empty *before* whitespace is collapsed, each collapsed with
 *   `" ".join(s.split())` — so a piece of only spaces survives as "" and contributes one empty word;
 * - words = `sentence.split(" ")`; every count is of *distinct* words (sets), case-sensitive, no stemming;
 * - ROUGE-L is summary level: the union over reference sentences r and candidate sentences c of the word *sets* of
 *   one LCS of (r, c), reconstructed with the library's tie-break; P = |union| / |hyp words|, R = |union| / |ref words|,
 *   F = 2·(P·R / (P + R + 1e-8));
 * - an empty hypothesis or reference (no sentence) raises → 0; so does Python's recursion limit in the LCS
 *   reconstruction, which recurses once per step (see RECON_CALL_LIMIT).
 *
 *   pltrdyRougeLF('the cat sat', 'the cat ran')  // union {the, cat} → P = R = 2/3 → F ≈ 0.6667
 */
import { pyCollapse } from '../py.js';

/**
 * `_recon` is recursive: one Python frame per step from (|r|, |c|) back to an edge of the LCS table. CPython's limit
 * is 1000 frames, of which LongBench's call chain (eval.py module → scorer → rouge_score → get_scores →
 * _get_avg_scores → lambda → rouge_l_summary_level → _union_lcs → _recon_lcs) takes 9, leaving 991 nested `_recon`
 * calls; one more raises RecursionError, which `rouge_score`'s bare `except` turns into a score of 0.
 */
export const RECON_CALL_LIMIT = 991;

export interface PltrdyOptions {
  /** Reproduce the RecursionError → 0 of long sentence pairs (default true). */
  recursionLimit?: boolean;
}

class RougeError extends Error {}

/** The sentence list `Rouge._get_scores` builds from one string. */
export function pltrdySentences(text: string): string[] {
  return text
    .split('.')
    .filter((piece) => piece.length > 0)
    .map(pyCollapse);
}

function words(sentences: readonly string[]): string[] {
  return sentences.flatMap((s) => s.split(' '));
}

/**
 * `_recon_lcs(x, y)`: the words of one LCS of x and y, walking back from (|x|, |y|): a match goes diagonal, else up
 * when table[i-1][j] > table[i][j-1], else left. Throws where Python would hit its recursion limit.
 */
export function reconLcs(x: readonly string[], y: readonly string[], options: PltrdyOptions = {}): string[] {
  const n = x.length;
  const m = y.length;
  const w = m + 1;
  const table = new Int32Array((n + 1) * w);
  for (let i = 1; i <= n; i++) {
    for (let j = 1; j <= m; j++) {
      table[i * w + j] = x[i - 1] === y[j - 1] ? table[(i - 1) * w + j - 1] + 1 : Math.max(table[(i - 1) * w + j], table[i * w + j - 1]);
    }
  }
  const out: string[] = [];
  let i = n;
  let j = m;
  let calls = 1;
  while (i > 0 && j > 0) {
    if (x[i - 1] === y[j - 1]) {
      out.push(x[i - 1]);
      i--;
      j--;
    } else if (table[(i - 1) * w + j] > table[i * w + j - 1]) i--;
    else j--;
    calls++;
  }
  if ((options.recursionLimit ?? true) && calls > RECON_CALL_LIMIT) throw new RougeError('maximum recursion depth exceeded');
  return out.reverse();
}

export interface PrfScore {
  f: number;
  p: number;
  r: number;
}

/** rouge_l_summary_level(evaluated_sentences, reference_sentences) with exclusive (set) counting. */
export function pltrdyRougeLSummary(hyp: readonly string[], ref: readonly string[], options: PltrdyOptions = {}): PrfScore {
  if (hyp.length <= 0 || ref.length <= 0) throw new RougeError('Collections must contain at least 1 sentence.');
  const m = new Set(words(ref)).size;
  const n = new Set(words(hyp)).size;
  const union = new Set<string>();
  for (const refS of ref) {
    const refWords = refS.split(' ');
    for (const hypS of hyp) for (const w of reconLcs(refWords, hypS.split(' '), options)) union.add(w);
  }
  const llcs = union.size;
  const r = llcs / m;
  const p = llcs / n;
  return { f: 2.0 * ((p * r) / (p + r + 1e-8)), p, r };
}

/** rouge_n with exclusive (set) n-grams. */
export function pltrdyRougeN(hyp: readonly string[], ref: readonly string[], n: number): PrfScore {
  if (hyp.length <= 0) throw new RougeError('Hypothesis is empty.');
  if (ref.length <= 0) throw new RougeError('Reference is empty.');
  const grams = (sentences: readonly string[]) => {
    const ws = words(sentences);
    const set = new Set<string>();
    for (let i = 0; i + n <= ws.length; i++) set.add(JSON.stringify(ws.slice(i, i + n)));
    return set;
  };
  const h = grams(hyp);
  const rf = grams(ref);
  let overlap = 0;
  for (const g of h) if (rf.has(g)) overlap++;
  const p = h.size === 0 ? 0.0 : overlap / h.size;
  const r = rf.size === 0 ? 0.0 : overlap / rf.size;
  return { f: 2.0 * ((p * r) / (p + r + 1e-8)), p, r };
}

/**
 * LongBench's rouge_score(prediction, ground_truth): `Rouge().get_scores(..., avg=True)` computes rouge-1, rouge-2
 * and rouge-l in that order (any of them raising gives 0) and returns rouge-l F (an average over one pair: /1).
 */
export function pltrdyRougeLF(prediction: string, groundTruth: string, options: PltrdyOptions = {}): number {
  const hyp = pltrdySentences(prediction);
  const ref = pltrdySentences(groundTruth);
  try {
    pltrdyRougeN(hyp, ref, 1);
    pltrdyRougeN(hyp, ref, 2);
    return pltrdyRougeLSummary(hyp, ref, options).f / 1;
  } catch (err) {
    if (err instanceof RougeError) return 0.0;
    throw err;
  }
}
