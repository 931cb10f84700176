/**
 * The NIAH grid: context lengths × depths. Depths are round(linspace(0, 100, n)) with NumPy's half-to-even rounding
 * ({0, 11, 22, 33, 44, 56, 67, 78, 89, 100} for 10); lengths come from a lengths value. The reference's
 * default run (START 32000, END 64000, STEP 16000) tests only {33000, 49000} (§8.3): referenceNiahLengths.
 *
 *   parseNiahLengths('1k..8k')         // [1000, 2000, 4000, 8000]  (doubling)
 *   parseNiahLengths('4k..16k:4k')     // [4000, 8000, 12000, 16000]
 *   niahDepths(10)                     // [0, 11, 22, 33, 44, 56, 67, 78, 89, 100]
 */
import { OptionError } from '../../errors.js';
import { rint } from '../py.js';

function parseCount(s: string, spec: string): number {
  const m = /^(\d+(?:\.\d+)?)([kK]?)$/.exec(s.trim());
  if (!m) throw new OptionError('lengths', spec, `'${s}' is not a token count (e.g. 4000 or 4k)`);
  const v = Number(m[1]) * (m[2] ? 1000 : 1);
  if (!Number.isInteger(v) || v <= 0) throw new OptionError('lengths', spec, `'${s}' is not a positive whole number of tokens`);
  return v;
}

/**
 * Lengths: a comma list ("1k,2k,32000"), a doubling range ("1k..128k": 1k, 2k, 4k, … up to 128k) or a
 * stepped range ("4k..16k:4k"). k = 1000, as the reference's lengths (32000, 64000).
 */
export function parseNiahLengths(spec: string): number[] {
  const range = /^([^.]+)\.\.([^:]+)(?::(.+))?$/.exec(spec.trim());
  let lengths: number[];
  if (range) {
    const lo = parseCount(range[1], spec);
    const hi = parseCount(range[2], spec);
    if (hi < lo) throw new OptionError('lengths', spec, 'the range ends before it starts');
    lengths = [];
    if (range[3] !== undefined) {
      const step = parseCount(range[3], spec);
      for (let v = lo; v <= hi; v += step) lengths.push(v);
    } else {
      for (let v = lo; v <= hi; v *= 2) lengths.push(v);
    }
  } else {
    lengths = spec.split(',').map((s) => parseCount(s, spec));
  }
  return [...new Set(lengths)].sort((a, b) => a - b);
}

/** The reference's grid: arange(1000, e_len + 1, step) filtered to [s_len, e_len]. */
export function referenceNiahLengths(sLen = 32000, eLen = 64000, step = 16000): number[] {
  const out: number[] = [];
  for (let v = 1000; v <= eLen; v += step) if (v >= sLen) out.push(v);
  return out;
}

/** `np.round(np.linspace(0, 100, n)).astype(int)`. */
export function niahDepths(n = 10): number[] {
  if (!Number.isInteger(n) || n < 1) throw new OptionError('depths', String(n), 'must be a whole number of at least 1');
  if (n === 1) return [0];
  const step = 100 / (n - 1);
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? 100 : rint(i * step)));
}

/** Depths: a count ("10") or an explicit comma list of percents ("0,50,100"). */
export function parseNiahDepths(spec: string): number[] {
  const t = spec.trim();
  if (/^\d+$/.test(t)) return niahDepths(Number(t));
  const depths = t.split(',').map((s) => {
    const v = Number(s.trim());
    if (s.trim() === '' || !Number.isFinite(v) || v < 0 || v > 100) throw new OptionError('depths', spec, `'${s}' is not a percent within 0..100`);
    return v;
  });
  return [...new Set(depths)].sort((a, b) => a - b);
}

export interface NiahCell {
  /** `len_<L>_depth_<d>`: the cell's id in prediction files */
  id: string;
  contextLength: number;
  depthPercent: number;
}

/** Every (length, depth) cell, lengths outer, in ascending order. */
export function niahGrid(lengths: readonly number[], depths: readonly number[]): NiahCell[] {
  return lengths.flatMap((contextLength) => depths.map((depthPercent) => ({ id: niahCellId(contextLength, depthPercent), contextLength, depthPercent })));
}

export function niahCellId(contextLength: number, depthPercent: number): string {
  return `len_${contextLength}_depth_${depthPercent}`;
}
