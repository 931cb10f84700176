/**
 * Python and NumPy behaviour the reference scorers depend on, reproduced exactly: whitespace as `str.split()` sees
 * it, `\b`/`\w`/`\d` as Python's `re` sees them on str patterns, `round(x, n)` (correctly rounded, ties to even),
 * `np.round` (multiply, rint, divide) and `np.mean` (pairwise summation). The scores of §8 are made of these; a
 * JavaScript default in their place moves reported numbers in the last decimal.
 *
 *   pySplit(' a\u00a0b ')  // ['a', 'b']     pyRound(0.125, 2)  // 0.12     npRound(28.395, 2)  // 28.4
 */

/** The characters `str.isspace()` accepts (bidi WS/B/S or category Zs): `\s` of Python's str regexes too. */
export const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** One character of Python's `\w` on str patterns: letters, every numeric category, underscore. */
export const PY_WORD_CHAR = '[\\p{L}\\p{N}_]';
/** Python's `\d` on str patterns: any Unicode decimal digit (category Nd). */
export const PY_DIGIT = '\\p{Nd}';

const WS_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'u');
const LEADING_WS = new RegExp(`^[${PY_WHITESPACE}]+`, 'u');
const TRAILING_WS = new RegExp(`[${PY_WHITESPACE}]+$`, 'u');

/** `s.split()`: split on runs of whitespace, no empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w !== '');
}

/** `s.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(LEADING_WS, '').replace(TRAILING_WS, '');
}

/** `s.lstrip(chars)`: drop leading characters that are in `chars`. */
export function pyLstrip(s: string, chars: string): string {
  let i = 0;
  while (i < s.length && chars.includes(s[i])) i++;
  return s.slice(i);
}

/** `" ".join(s.split())`: collapse every whitespace run to one space, trim the ends. */
export function pyCollapse(s: string): string {
  return pySplit(s).join(' ');
}

/** The first code point of `s` as a string (`s[0]` in Python), or '' for ''. */
export function pyFirstChar(s: string): string {
  const cp = s.codePointAt(0);
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

/** Code points (`len()` and indexing in Python count these, not UTF-16 units). */
export function codePoints(s: string): string[] {
  return Array.from(s);
}

/** A regex source for `\b` before/after a word-character atom, as Python's `re` decides it. */
export const PY_WORD_START = `(?<!${PY_WORD_CHAR})`;
export const PY_WORD_END = `(?!${PY_WORD_CHAR})`;

/**
 * `int(s)` for a string of decimal digits in any script (Python's `\d` matches them and `int()` accepts them),
 * with an optional sign, surrounding whitespace and single underscores between digits. Returns undefined where
 * Python raises ValueError.
 */
export function pyInt(s: string): number | undefined {
  const t = pyStrip(s);
  const m = new RegExp(`^([+-]?)(${PY_DIGIT}+(?:_${PY_DIGIT}+)*)$`, 'u').exec(t);
  if (!m) return undefined;
  let value = 0;
  for (const ch of m[2]!) if (ch !== '_') value = value * 10 + digitValue(ch);
  return m[1] === '-' ? -value : value;
}

/** `float(s)` for the `\d+\.\d+|\d+` matches the scorers take (ASCII or other decimal digits). */
export function pyFloat(s: string): number {
  let out = '';
  for (const ch of s) out += ch === '.' ? '.' : String(digitValue(ch));
  return Number(out);
}

/**
 * Value of one Unicode decimal digit: Nd digits come in runs of ten from a zero, so count back to the start of the
 * run. (ASCII fast path first.)
 */
function digitValue(ch: string): number {
  const cp = ch.codePointAt(0)!;
  if (cp >= 48 && cp <= 57) return cp - 48;
  const nd = /\p{Nd}/u;
  let start = cp;
  while (start > 0 && nd.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

/**
 * Python's `round(x, ndigits)` on a float: the decimal nearest to the exact binary value of x, ties to even, read
 * back as the nearest double (CPython does this with dtoa mode 3). Differs from `Number(x.toFixed(n))` on exact
 * ties (0.125 → 0.12) and from `Math.round(x*100)/100` wherever x*100 rounds.
 */
export function pyRound(x: number, ndigits: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const { mantissa, exponent } = exactBinary(Math.abs(x));
  const scale = 10n ** BigInt(ndigits);
  let q: bigint;
  if (exponent >= 0) {
    q = (mantissa << BigInt(exponent)) * scale;
  } else {
    const num = mantissa * scale;
    const den = 1n << BigInt(-exponent);
    q = num / den;
    const twiceRem = 2n * (num - q * den);
    if (twiceRem > den || (twiceRem === den && q % 2n === 1n)) q += 1n;
  }
  const r = Number(q) / Number(scale);
  return x < 0 ? -r : r;
}

/** x = mantissa · 2^exponent exactly, mantissa a non-negative integer (x finite, ≥ 0). */
function exactBinary(x: number): { mantissa: bigint; exponent: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  if (biased === 0) return { mantissa: frac, exponent: -1074 };
  return { mantissa: frac | (1n << 52n), exponent: biased - 1075 };
}

/** `np.rint`: round half to even on the double itself. */
export function rint(y: number): number {
  const f = Math.floor(y);
  const d = y - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * `round(np.float64(x), n)` — NumPy's own `__round__`: multiply by 10^n, rint, divide. Not Python's rounding
 * (28.395 → 28.4 here, 28.39 with `round(28.395, 2)`).
 */
export function npRound(x: number, ndigits: number): number {
  const f = 10 ** ndigits;
  return rint(x * f) / f;
}

/** NumPy's pairwise summation of float64 (`np.add.reduce` on a contiguous array; blocks of 128, unrolled by 8). */
export function npPairwiseSum(a: readonly number[], start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = a.slice(start, start + 8);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return npPairwiseSum(a, start, n2) + npPairwiseSum(a, start + n2, n - n2);
}

/** `np.mean` of a list of floats: pairwise sum / n (NaN for an empty list, as NumPy gives with a warning). */
export function npMean(a: readonly number[]): number {
  return a.length === 0 ? NaN : npPairwiseSum(a) / a.length;
}

/**
 * A multiset of strings (`collections.Counter`), keyed by exact string value.
 */
export function counter(items: Iterable<string>): Map<string, number> {
  const c = new Map<string, number>();
  for (const it of items) c.set(it, (c.get(it) ?? 0) + 1);
  return c;
}
