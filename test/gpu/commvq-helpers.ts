/**
 * What the CommVQ cache and store tests on the GPU share: seeded host codebooks of a small geometry (E and the
 * encoder's matrices rounded to bf16, as the device store keeps them, so both stores start from the same numbers),
 * and the comparison that allows for what may differ between the stores.
 *
 * What may differ, and the bound: key codes are the same greedy choice on the same inputs (f32 on both sides: a
 * near-tie may flip, ≤ 1% of codes); value bits come from the encoder run with bf16 GEMMs on the GPU and f32 on the
 * host, so a 4-way choice near a tie may flip (≤ 2% of bits; that every flip is a near-tie is pinned down in
 * value-encode.test.ts). A flipped group moves one token's v̂ by about one row of E (a few % of an output at these
 * sizes) and a token may carry two, so outputs are compared with |gpu − cpu| ≤ 0.12·max|cpu| + 0.02·|cpu|: a wrong
 * window slot, a missed flush or a misplaced position moves outputs by O(max|cpu|), outside it.
 */
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { ropeTable } from '../../src/core/model/rope.js';
import { bf16ToF32, f32ToBf16 } from '../../src/core/tensor/dtype.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { compressorShape, initCompressor, type ValueCompressorParams } from '../../src/core/values/value-compressor.js';
import { Rng } from './gpu-helpers.js';

/** Two layers of 4 query heads over 2 KV heads of 64 channels. */
export const SHAPE = { numLayers: 2, queryHeads: 4, kvHeads: 2, headDim: 64 };
export const D = SHAPE.kvHeads * SHAPE.headDim;
export const ROPE = ropeTable({ type: 'default', theta: 10000 }, 64);

export const bf16 = (a: Float32Array): Float32Array => a.map((x) => bf16ToF32(f32ToBf16(x)));

/** Codebooks on the host: θ of 3 stages, a random 1-bit value compressor per layer. */
export function randomBooks(seed: number, layers = SHAPE.numLayers, kvHeads = SHAPE.kvHeads, width = D) {
  const cpu = new CpuBackend();
  const rng = new Rng(seed);
  const valueShape = compressorShape(1, width);
  const keys = new Map<number, LayerKeyCodebook>();
  const values = new Map<number, { params: ValueCompressorParams; scale: Tensor }>();
  for (let l = 0; l < layers; l++) {
    const theta = Float32Array.from({ length: 3 * kvHeads * 128 * 32 }, () => 0.05 * rng.normal());
    keys.set(l, new LayerKeyCodebook({ residuals: 3, groups: kvHeads, halfSize: 64, pairs: 32 }, theta));
    const params = initCompressor(cpu, valueShape, 3 + l);
    for (const name of ['codebook', 'w1', 'w2'] as const) params[name] = cpu.fromArray(bf16(cpu.toFloat32(params[name])), params[name].shape, 'f32');
    values.set(l, { params, scale: cpu.fromArray(Float32Array.from({ length: width }, () => 0.5 + rng.uniform()), [width], 'f32') });
  }
  return { keys, values, valueShape };
}

/** Elements outside |gpu − cpu| ≤ 0.12·max|cpu| + 0.02·|cpu| (see the header), and the largest error over max|cpu|. */
export function worstError(got: Float32Array, want: Float32Array): { bad: number; worst: number } {
  let max = 0;
  for (const x of want) max = Math.max(max, Math.abs(x));
  let bad = 0;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    worst = Math.max(worst, e / (max || 1));
    if (e > 0.12 * max + 0.02 * Math.abs(want[i]!)) bad++;
  }
  return { bad, worst };
}
