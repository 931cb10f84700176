/**
 * FP8 e4m3 (OCP "e4m3fn", torch.float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities.
 *   code s eeee mmm:  e > 0: (−1)^s · 2^(e−7) · (1 + m/8);   e = 0: (−1)^s · 2^−6 · m/8 (subnormals, step 2^−9);
 *   0x7f and 0xff (e = 15, m = 7) are NaN, so the largest value is 2^8 · 1.75 = 448.
 * Encoding rounds to nearest, ties to even mantissa, and saturates: every finite |x| > 448, and ±Infinity, becomes
 * ±448 — as CUDA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3) does (a KV cache must not turn an outlier into
 * NaN); NaN becomes 0x7f. −0 keeps its sign (0x80).
 *
 * Per-head scales (the FP8 KV cache): x: [T, H·D] (a row is one token, head h owns columns h·D .. (h+1)·D),
 *   scale_h = amax_h / 448 (f32; amax over the T tokens given), code = e4m3(x / scale_h), x̂ = decode(code) · scale_h.
 * An all-zero head gets scale 0 and codes 0 (x̂ = 0). Non-finite x is refused with a CommvqError, as in
 * affine-groups.ts. Error, with y = x/scale_h and e = max(⌊log2|y|⌋, −6): |y − ŷ| ≤ 2^(e−4), i.e. relative 2^−4 for
 * normal y and absolute 2^−10 for subnormal y; plus the two f32 roundings of x/scale and decode·scale.
 */
import { check } from '../errors.js';
import { roundHalfEven } from './round-half-even.js';

/** The largest finite e4m3 value. */
export const E4M3_MAX = 448;
/** The NaN code the encoder writes. */
export const E4M3_NAN = 0x7f;

/**
 * e4m3 code (0..255) → its value.
 *
 *   e4m3ToF32(0x38)  // 1
 *   e4m3ToF32(0x7e)  // 448
 *   e4m3ToF32(0x01)  // 2^-9
 *   e4m3ToF32(0xff)  // NaN
 */
export function e4m3ToF32(code: number): number {
  const sign = code & 0x80 ? -1 : 1;
  const e = (code >> 3) & 0xf;
  const m = code & 0x7;
  if (e === 0xf && m === 0x7) return NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/**
 * Value → e4m3 code: round to nearest even, saturate to ±448, NaN → 0x7f.
 *
 *   f32ToE4m3(1)        // 0x38
 *   f32ToE4m3(1.0625)   // 0x38 (halfway between 1 and 1.125: ties to the even mantissa)
 *   f32ToE4m3(1000)     // 0x7e (448)
 *   f32ToE4m3(-0)       // 0x80
 */
export function f32ToE4m3(x: number): number {
  if (Number.isNaN(x)) return E4M3_NAN;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (a >= E4M3_MAX) return sign | 0x7e;
  if (a < 2 ** -6) return sign | roundHalfEven(a * 2 ** 9); // subnormal; m = 8 is 0x08 = 2^-6, the next code up
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 may be off by one next to a power of two
  else if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven((a / 2 ** e - 1) * 8); // exact: scaling by a power of two, then by 8
  if (m === 8) {
    m = 0;
    e++;
  }
  return Math.min(sign | ((e + 7) << 3) | m, sign | 0x7e); // 464 > a ≥ 448 never gets here; guard the top anyway
}

export interface Fp8Heads {
  /** T, tokens */
  rows: number;
  /** H, heads */
  heads: number;
  /** D, channels per head */
  headDim: number;
  /** e4m3 codes: [T, H·D], x's own order */
  codes: Uint8Array;
  /** scale_h = amax_h / 448: [H], f32 */
  scales: Float32Array;
}

/**
 * Quantizes x: [rows, heads·headDim] to e4m3 with one f32 scale per head.
 *
 *   const g = quantizeFp8PerHead(Float32Array.of(448, -224, 1, 0.5), 1, 2, 2);  // [1, 2·2]
 *   // g.scales [1, 0.00223…]: head 0's amax is 448, head 1's is 1
 *   dequantizeFp8PerHead(g)   // [448, -224, 1, 0.5]
 */
export function quantizeFp8PerHead(x: ArrayLike<number>, rows: number, heads: number, headDim: number): Fp8Heads {
  const fn = 'quantizeFp8PerHead';
  const cols = heads * headDim;
  check(Number.isInteger(rows) && rows >= 0 && Number.isInteger(heads) && heads > 0 && Number.isInteger(headDim) && headDim > 0, `${fn}: [${rows}, ${heads}·${headDim}] is not a shape`);
  check(x.length === rows * cols, `${fn}: ${x.length} values for [${rows}, ${heads}·${headDim}]`);
  const scales = new Float32Array(heads); // [H]
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    check(Number.isFinite(v), () => `${fn}: x[${Math.floor(i / cols)}, ${i % cols}] is ${v}`, 'non-finite keys or values mean the model failed before the cache');
    const h = Math.floor((i % cols) / headDim);
    scales[h] = Math.max(scales[h]!, Math.abs(v));
  }
  for (let h = 0; h < heads; h++) scales[h] = scales[h]! / E4M3_MAX;
  const codes = new Uint8Array(rows * cols); // [T, H·D]
  for (let i = 0; i < x.length; i++) {
    const s = scales[Math.floor((i % cols) / headDim)]!;
    codes[i] = s === 0 ? 0 : f32ToE4m3(Math.fround(x[i]! / s));
  }
  return { rows, heads, headDim, codes, scales };
}

/**
 * x̂ = decode(code) · scale_h: [rows, heads·headDim], f32.
 *
 *   dequantizeFp8PerHead(quantizeFp8PerHead(Float32Array.of(2, -1), 1, 1, 2))  // [2, -1]
 */
export function dequantizeFp8PerHead(g: Fp8Heads): Float32Array {
  const cols = g.heads * g.headDim;
  check(g.codes.length === g.rows * cols && g.scales.length === g.heads, `dequantizeFp8PerHead: ${g.codes.length} codes and ${g.scales.length} scales for [${g.rows}, ${g.heads}·${g.headDim}]`);
  const out = new Float32Array(g.codes.length); // [T, H·D]
  for (let i = 0; i < out.length; i++) out[i] = e4m3ToF32(g.codes[i]!) * g.scales[Math.floor((i % cols) / g.headDim)]!;
  return out;
}
