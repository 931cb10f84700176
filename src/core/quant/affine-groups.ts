/**
 * Asymmetric (affine) quantization of groups: the number format of KIVI and of the INT4/INT2 caches (HF quanto).
 *
 * Each group of values x gets, with L = 2^bits − 1:
 *   scale = (max − min) / L, zero = min, both rounded to the stored dtype (s′, z′), then
 *   q = clamp(roundHalfEven((x − z′) / s′), 0, L)   (q = 0 where s′ = 0),   x̂ = q·s′ + z′.
 * Codes are computed from the stored s′ and z′, so the dequantizer needs nothing else.
 *
 * Two groupings of a matrix x: [T, C] (row-major, a row is one token, a column one channel):
 *   'token':   groups of `group` consecutive channels of one row (INT4/INT2, KIVI values);
 *              scales, zeros: [T, C / group], entry (t, j) for x[t, j·group .. (j+1)·group).
 *   'channel': groups of `group` consecutive tokens of one column (KIVI keys);
 *              scales, zeros: [T / group, C], entry (i, c) for x[i·group .. (i+1)·group, c].
 * Codes: [T, C] in x's own order for both, packed by pack-codes.ts into bytes [T, ceil(C·bits/8)].
 *
 * Stored dtype of s′ and z′ ('f16' or 'f32', kept as f32 values that the stored dtype holds exactly):
 *   'f16' is what KIVI stores, and what the CommVQ paper's "average bits" assume (KIVI-2: 2 + 32/32 = 3.00); it
 *   refuses a group whose scale or zero overflows f16 (|·| > 65504) rather than store an infinity.
 *   'f32' makes a constant group exact for any f32 value (with f16 it is exact when min is an f16 value).
 * Error per element (derived in the test): |x − x̂| ≤ max(s′/2, L·|s − s′| + |min − z′|), plus f32 arithmetic.
 *
 * Refused with a CommvqError naming the function: non-finite input (a NaN would silently poison its whole group's
 * min and max; a cache holding one means the model already failed), a group that does not divide the axis (KIVI
 * flushes whole groups and the HF caches need head_dim % group = 0; a ragged group would be another format for the
 * kernels to handle), and bits outside {1, 2, 4, 8}.
 * Arithmetic follows f32, as a GPU twin would: (x − z′) and its quotient by s′ are rounded to f32, x̂ once (as an fma).
 */
import { check } from '../errors.js';
import { roundF16 } from '../tensor/dtype.js';
import { CODE_BITS, type CodeBits, packCodes, unpackCodes } from './pack-codes.js';
import { roundHalfEven } from './round-half-even.js';

export type AffineAxis = 'token' | 'channel';
export type AffineStoredDType = 'f16' | 'f32';

export interface AffineOptions {
  bits: CodeBits;
  /** values per group: consecutive channels ('token') or consecutive tokens ('channel') */
  group: number;
  /** the dtype a cache stores scale and zero in; default 'f16' (KIVI's) */
  stored?: AffineStoredDType;
}

export interface AffineGroups {
  axis: AffineAxis;
  bits: CodeBits;
  group: number;
  stored: AffineStoredDType;
  /** T, tokens (rows of x) */
  rows: number;
  /** C, channels (columns of x) */
  cols: number;
  /** packed codes: [rows, ceil(cols·bits/8)] bytes, LSB-first (pack-codes.ts) */
  codes: Uint8Array;
  /** s′ per group: [rows, cols/group] for 'token', [rows/group, cols] for 'channel' */
  scales: Float32Array;
  /** z′ per group, same shape as scales */
  zeros: Float32Array;
}

/** Rounds v to the stored dtype; throws where f16 overflows. */
function toStored(v: number, stored: AffineStoredDType, fn: string, what: string): number {
  if (stored === 'f32') return Math.fround(v);
  const r = roundF16(v);
  check(Number.isFinite(r), () => `${fn}: ${what} ${v} overflows f16 (largest 65504)`, "store scales and zeros as 'f32'");
  return r;
}

/**
 * Quantizes x: [rows, cols] (row-major) in affine groups along `axis`.
 *
 *   const x = Float32Array.of(0, 1, 2, 3,  10, 10, 10, 10);            // [2, 4]
 *   const g = quantizeAffine(x, 2, 4, 'token', { bits: 2, group: 4 });
 *   // g.scales [1, 0], g.zeros [0, 10], codes rows [0, 1, 2, 3] and [0, 0, 0, 0]
 *   dequantizeAffine(g)                                               // equals x exactly
 */
export function quantizeAffine(x: ArrayLike<number>, rows: number, cols: number, axis: AffineAxis, o: AffineOptions): AffineGroups {
  const fn = 'quantizeAffine';
  const { bits, group } = o;
  const stored = o.stored ?? 'f16';
  check(CODE_BITS.includes(bits), `${fn}: bits ${bits} is not one of ${CODE_BITS.join(', ')}`);
  check(Number.isInteger(rows) && Number.isInteger(cols) && rows >= 0 && cols >= 0, `${fn}: shape [${rows}, ${cols}] is not a matrix shape`);
  check(x.length === rows * cols, `${fn}: ${x.length} values for a [${rows}, ${cols}] matrix`);
  const along = axis === 'token' ? cols : rows;
  check(Number.isInteger(group) && group > 0, `${fn}: group ${group} is not a positive integer`);
  check(along % group === 0, () => `${fn}: group ${group} does not divide the ${axis === 'token' ? `${cols} channels` : `${rows} tokens`}`, 'groups are whole: quantize a multiple of group');
  const L = 2 ** bits - 1;
  const [gRows, gCols] = axis === 'token' ? [rows, cols / group] : [rows / group, cols];
  const scales = new Float32Array(gRows * gCols); // [gRows, gCols]
  const zeros = new Float32Array(gRows * gCols); // [gRows, gCols]
  const q = new Uint8Array(rows * cols); // [rows, cols] unpacked codes
  // element k of group (gr, gc), as an index into x
  const at = axis === 'token' ? (gr: number, gc: number, k: number) => gr * cols + gc * group + k : (gr: number, gc: number, k: number) => (gr * group + k) * cols + gc;
  for (let gr = 0; gr < gRows; gr++) {
    for (let gc = 0; gc < gCols; gc++) {
      let min = Infinity;
      let max = -Infinity;
      for (let k = 0; k < group; k++) {
        const i = at(gr, gc, k);
        const v = x[i]!;
        check(Number.isFinite(v), () => `${fn}: x[${Math.floor(i / cols)}, ${i % cols}] is ${v}`, 'non-finite keys or values mean the model failed before the cache');
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const s = toStored((max - min) / L, stored, fn, 'scale');
      const z = toStored(min, stored, fn, 'zero');
      scales[gr * gCols + gc] = s;
      zeros[gr * gCols + gc] = z;
      for (let k = 0; k < group; k++) {
        const i = at(gr, gc, k);
        const t = s === 0 ? 0 : Math.fround(Math.fround(x[i]! - z) / s);
        q[i] = Math.min(L, Math.max(0, roundHalfEven(t)));
      }
    }
  }
  return { axis, bits, group, stored, rows, cols, codes: packCodes(q, rows, cols, bits), scales, zeros };
}

/**
 * x̂ = q·s′ + z′ for every element: [rows, cols] (row-major), the inverse of quantizeAffine up to its bound.
 *
 *   dequantizeAffine(quantizeAffine(Float32Array.of(0, 1, 2, 3), 1, 4, 'token', { bits: 2, group: 4 }))
 *   // Float32Array [0, 1, 2, 3]
 */
export function dequantizeAffine(g: AffineGroups): Float32Array {
  const { rows, cols, group } = g;
  const q = unpackCodes(g.codes, rows, cols, g.bits); // [rows, cols]
  const gCols = g.axis === 'token' ? cols / group : cols;
  check(g.scales.length === g.zeros.length && g.scales.length === (g.axis === 'token' ? rows : rows / group) * gCols, `dequantizeAffine: ${g.scales.length} scales and ${g.zeros.length} zeros for [${rows}, ${cols}] in groups of ${group} per ${g.axis}`);
  const out = new Float32Array(rows * cols); // [rows, cols]
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = g.axis === 'token' ? r * gCols + Math.floor(c / group) : Math.floor(r / group) * gCols + c;
      out[r * cols + c] = q[r * cols + c]! * g.scales[j]! + g.zeros[j]!; // one rounding to f32, as an fma
    }
  }
  return out;
}
