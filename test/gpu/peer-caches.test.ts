/**
 * The peer caches on the GPU (DeviceRowQuantCache: int4/int2, fp8; DeviceKiviCache) against their CPU references
 * (RowQuantCache, KiviCache on the CPU backend), fed identical bf16 keys, values and queries: three sequences of mixed
 * lengths, one prompt in two chunks, then batched decode steps across group and residual boundaries and flushes; GQA
 * ratios 1, 3, 4 and 8, D_h 64 and 128; and one long sequence whose decode splits its keys over many units.
 * Skipped where no GPU is found.
 *
 * What must agree, and why the bounds are what they are:
 *   - the stored state, exactly: each cache's keys and values as attention reads them (codes dequantized, exact tails)
 *     are, on the GPU, bf16(x̂) for the CPU's f32 x̂ bit for bit. The device quantizer mirrors the reference's
 *     arithmetic (min/max by the same comparisons, s′ = f16(f32((max − min)/L)) computed in double, codes from
 *     f32(f32(x − z′)/s′) rounded half to even; e4m3 by the same rounding), and x̂ = fma(q, s′, z′) or e4m3·s is one
 *     f32 rounding on both sides; so a single differing code or scale fails this check.
 *   - decode outputs (the fused kernel): the same x̂ in f32 on both sides, so the only differences are the order of
 *     f32 sums, exp2f against Math.exp (a few ulp), and the final bf16 rounding (half an ulp: ≤ 2^-8·|ref|):
 *       |gpu − cpu| ≤ 2^-8·|ref| + 2^-12·max|v̂|.
 *   - prompt outputs go through the dense prefill kernel, which rounds P to bf16 (≤ 2^-8·max|v| absolute) and the
 *     output: attention.test.ts's bound 2^-7·|ref| + 2^-8·max|v|. A later chunk of an int/fp8 prompt also reads the
 *     codes before it dequantized to bf16: keys and values moved by ≤ 2^-8 relative, so scores by
 *     ≤ Δs = 2^-8·max_h ‖q_h‖₁·max|k̂|/sqrt(D_h) and the weights by a factor within e^{±2Δs}: we add (e^{2Δs} − 1 +
 *     2^-8)·max|v̂|, computed from the step's own data.
 *   - quantize → dequantize round trips, against the raw inputs: affine groups within half a step plus what storing
 *     s and z in f16 costs, L·|s − s′| + |min − z′| ≤ (L·s + |min|)·2^-11, plus the bf16 read-back (half an ulp,
 *     ≤ 2^-8·|x̂|); fp8 within 2^-4·|x| (normal e4m3) or 2^-10·s (subnormal), plus the read-back.
 * The allocator must be back where it started after dispose().
 */
import { describe, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import type { CacheShape } from '../../src/core/model/kv-cache.js';
import { GEOMETRIES, KINDS, runPeerScenario, type Kind, type Scenario } from '../helpers/peer-scenario.js';
import { SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

/** The scenario on a fresh CUDA backend, disposed after. */
function run(kind: Kind, shape: CacheShape, sc: Scenario): void {
  const cuda = new CudaBackend();
  try {
    runPeerScenario(kind, shape, sc, cuda);
  } finally {
    cuda.dispose();
  }
}

describe.skipIf(!gpu)('peer caches on the GPU against their CPU references', () => {
  const cases = KINDS.flatMap((k) => GEOMETRIES.map((g) => [k.name, ...g, k] as const));
  it.each(cases)('%s, H_kv %i, G %i, D_h %i: three sequences of mixed lengths, a chunked prompt, 40 batched decode steps', (_n, Hkv, G, D, kind) => {
    const shape: CacheShape = { numLayers: 2, queryHeads: Hkv * G, kvHeads: Hkv, headDim: D };
    run(kind, shape, { prompts: [[3], [21], [13, 17]], steps: 40, capacity: 128, seed: SEED });
  });

  it.each(KINDS.map((k) => [k.name, k] as const))('%s: a prompt of 1500 tokens then 5 decode steps, the keys split over many units', (_n, kind) => {
    run(kind, { numLayers: 1, queryHeads: 32, kvHeads: 8, headDim: 128 }, { prompts: [[1000, 500]], steps: 5, capacity: 1600, seed: SEED + 7 });
  });
});

