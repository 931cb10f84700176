/**
 * The round-trip bounds of the peer formats, as the quant/ tests derive them, for rows x: [T, W] (a row is a token).
 *   int (affine-groups.ts): per group, |x − x̂| ≤ max(s′/2, L·|s − s′| + |min − z′|), s = (max − min)/L, s′ and z′ f16.
 *   fp8 (fp8-e4m3.ts): per token and head, y = x/scale, scale = amax/448: |y − ŷ| ≤ 2^(max(⌊log2|y|⌋, −6) − 4).
 * Both plus f32 rounding of the arithmetic: 1e−6 relative to the group's (head's) largest |x|.
 */
import { roundF16 as f16 } from '../../src/core/tensor/dtype.js';


/** The largest |x − x̂| over the bound it may reach (≤ 1 means within it), for per-token groups of `group` channels. */
export function intExcess(x: Float32Array, xh: Float32Array, bits: number, group: number): number {
  const L = 2 ** bits - 1;
  let worst = 0;
  for (let g0 = 0; g0 < x.length; g0 += group) {
    const xs = x.subarray(g0, g0 + group);
    const [min, max] = [Math.min(...xs), Math.max(...xs)];
    const s = (max - min) / L;
    const bound = Math.max(f16(s) / 2, L * Math.abs(s - f16(s)) + Math.abs(min - f16(min))) + 1e-6 * Math.max(Math.abs(min), Math.abs(max));
    for (let i = 0; i < group; i++) worst = Math.max(worst, Math.abs(xs[i]! - xh[g0 + i]!) / bound);
  }
  return worst;
}

/** The same for fp8 with one scale per token and head of `headDim` channels. */
export function fp8Excess(x: Float32Array, xh: Float32Array, headDim: number): number {
  let worst = 0;
  for (let h0 = 0; h0 < x.length; h0 += headDim) {
    const xs = x.subarray(h0, h0 + headDim);
    const amax = Math.max(...xs.map(Math.abs));
    if (amax === 0) continue;
    const scale = amax / 448;
    for (let i = 0; i < headDim; i++) {
      const y = Math.abs(xs[i]!) / scale;
      const e = Math.max(y === 0 ? -6 : Math.floor(Math.log2(y)), -6);
      const bound = 2 ** (e - 4) * scale + 1e-6 * amax;
      worst = Math.max(worst, Math.abs(xs[i]! - xh[h0 + i]!) / bound);
    }
  }
  return worst;
}
