/**
 * fuzzywuzzy's `fuzz.ratio(s1, s2)` (0.18.0), the code-similarity score of LongBench's lcc and repobench-p:
 * `s1 == s2` → 100 (checked first, so two empty strings score 100), either empty → 0, else
 * `int(round(100 · SequenceMatcher(None, s1, s2).ratio()))` with Python's round-half-to-even.
 *
 * Which SequenceMatcher runs depends on the Python environment: with `python-Levenshtein` installed (the spec's
 * reading, our default) it is `Levenshtein.ratio` = the InDel similarity 1 − indel/(|s1|+|s2|) on code points
 * (rapidfuzz's formula, as `Levenshtein` ≥ 0.21 computes it); without it fuzzywuzzy falls back to `difflib`
 * (Ratcliff–Obershelp matching blocks, with the autojunk heuristic), which we also provide.
 *
 *   fuzzRatio('kitten', 'sitting')  // indel 5 over 13 → 1 − 5/13 = 0.615… → 62
 */
import { codePoints, rint } from '../py.js';

export type FuzzBackend = 'levenshtein' | 'difflib';

/** fuzz.ratio(s1, s2) → an integer 0..100. */
export function fuzzRatio(s1: string, s2: string, backend: FuzzBackend = 'levenshtein'): number {
  if (s1 === s2) return 100;
  if (s1.length === 0 || s2.length === 0) return 0;
  const a = codePoints(s1);
  const b = codePoints(s2);
  const ratio = backend === 'levenshtein' ? indelRatio(a, b) : difflibRatio(a, b);
  return rint(100 * ratio);
}

/** Levenshtein.ratio: 1 − indel_distance / (|a| + |b|), indel distance = |a| + |b| − 2·LCS(a, b). */
export function indelRatio(a: readonly string[], b: readonly string[]): number {
  const lensum = a.length + b.length;
  if (lensum === 0) return 1.0;
  const dist = lensum - 2 * lcsLength(a, b);
  return 1.0 - dist / lensum;
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/**
 * difflib.SequenceMatcher(None, a, b).ratio() = 2·M / (|a| + |b|), M the total size of the matching blocks found by
 * recursive longest-match, with b's "popular" elements (more than 1% of b, when |b| ≥ 200) junked.
 */
export function difflibRatio(a: readonly string[], b: readonly string[]): number {
  const b2j = new Map<string, number[]>();
  b.forEach((ch, j) => {
    const list = b2j.get(ch);
    if (list) list.push(j);
    else b2j.set(ch, [j]);
  });
  const n = b.length;
  if (n >= 200) {
    const ntest = Math.floor(n / 100) + 1;
    for (const [ch, idxs] of [...b2j]) if (idxs.length > ntest) b2j.delete(ch);
  }
  let matched = 0;
  const queue: [number, number, number, number][] = [[0, a.length, 0, b.length]];
  while (queue.length > 0) {
    const [alo, ahi, blo, bhi] = queue.pop()!;
    const [i, j, k] = findLongestMatch(a, b, b2j, alo, ahi, blo, bhi);
    if (k > 0) {
      matched += k;
      if (alo < i && blo < j) queue.push([alo, i, blo, j]);
      if (i + k < ahi && j + k < bhi) queue.push([i + k, ahi, j + k, bhi]);
    }
  }
  const total = a.length + b.length;
  return total ? (2.0 * matched) / total : 1.0;
}

/**
 * find_longest_match with no junk predicate: the longest block a[i:i+k] == b[j:j+k] over the elements left in b2j
 * (earliest i, then earliest j wins ties), then extended on both ends by equal elements, popular ones included
 * (with isjunk=None nothing is "junk", so difflib's extension loops take them).
 */
function findLongestMatch(
  a: readonly string[],
  b: readonly string[],
  b2j: Map<string, number[]>,
  alo: number,
  ahi: number,
  blo: number,
  bhi: number,
): [number, number, number] {
  let besti = alo;
  let bestj = blo;
  let bestsize = 0;
  let j2len = new Map<number, number>();
  for (let i = alo; i < ahi; i++) {
    const newj2len = new Map<number, number>();
    for (const j of b2j.get(a[i]) ?? []) {
      if (j < blo) continue;
      if (j >= bhi) break;
      const k = (j2len.get(j - 1) ?? 0) + 1;
      newj2len.set(j, k);
      if (k > bestsize) {
        besti = i - k + 1;
        bestj = j - k + 1;
        bestsize = k;
      }
    }
    j2len = newj2len;
  }
  while (besti > alo && bestj > blo && a[besti - 1] === b[bestj - 1]) {
    besti--;
    bestj--;
    bestsize++;
  }
  while (besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] === b[bestj + bestsize]) bestsize++;
  return [besti, bestj, bestsize];
}
