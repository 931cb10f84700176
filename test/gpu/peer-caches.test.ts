/**
 * The peer caches on the GPU (DeviceRowQuantCache: int4/int2, fp8; DeviceKiviCache) against their CPU references
 * (RowQuantCache, KiviCache on the CPU backend), fed identical bf16 keys, values and queries: three sequences of mixed
 * lengths, one prompt in two chunks, then batched decode steps across group and residual boundaries and flushes; GQA
 * ratios 1, 3, 4 and 8, D_h 64 and 128; one long sequence whose decode splits its keys over many units; and each kind
 * through the cache factory in a random model (decodeBatch over mixed lengths, no leak). Skipped where no GPU is found.
 * The same scenario runs on the CPU on an emulated device (test/peers/device-caches-emulated.test.ts).
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
import { describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { openCacheFactory } from '../../src/core/cache-factory.js';
import type { CacheSpec } from '../../src/core/cache-spec.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import type { CacheShape } from '../../src/core/model/kv-cache.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { DeviceKiviCache } from '../../src/core/peers/device-kivi-cache.js';
import { DeviceRowQuantCache } from '../../src/core/peers/device-row-cache.js';
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

  it.each(KINDS.map((k) => [k.name, k] as const))('%s: a prompt of 1000 tokens in two chunks then 5 decode steps, the keys split over many units', (_n, kind) => {
    run(kind, { numLayers: 1, queryHeads: 32, kvHeads: 8, headDim: 128 }, { prompts: [[700, 300]], steps: 5, capacity: 1024, seed: SEED + 7 });
  });
});

describe.skipIf(!gpu)('the peer caches in a model on the GPU', () => {
  const specs: [string, CacheSpec, new (...args: never[]) => unknown][] = [
    ['kivi:bits=2,group=8,residual=16', { kind: 'kivi', bits: 2, group: 8, residual: 16 }, DeviceKiviCache],
    ['kivi:bits=1', { kind: 'kivi', bits: 1 }, DeviceKiviCache],
    ['int4:residual=8', { kind: 'int4', residual: 8 }, DeviceRowQuantCache],
    ['int2:group=32', { kind: 'int2', group: 32 }, DeviceRowQuantCache],
    ['fp8', { kind: 'fp8' }, DeviceRowQuantCache],
  ];
  it.each(specs)('--cache %s: the factory makes the device cache, three prompts of mixed lengths decode together, nothing leaks', (_t, spec, type) => {
    const backend = CudaBackend.create(0);
    try {
      const model = randomModel(parseModelConfig(DEMO_CONFIG, 'demo config'), backend, { seed: 3 });
      // what the model and backend make on first use and keep, not the cache's: the GEMM workspace (32 MiB) and the
      // RoPE inverse frequencies on the device (CudaBackend.invFreqs); one token through a dense cache makes both
      const warm = model.createDenseCache(8, 1);
      model.forward(Int32Array.of(1), warm).dispose();
      warm.dispose();
      backend.synchronize();
      const before = backend.memory().bytesInUse;
      const caches = openCacheFactory(model, spec);
      const cache = caches.make(64, 3);
      expect(cache).toBeInstanceOf(type);
      const prompts = [5, 1, 23].map((n, b) => Int32Array.from({ length: n }, (_, i) => (7 * i + 31 * b) % 256));
      prompts.forEach((p, b) => model.forward(p, cache, { sequence: b }).dispose());
      cache.endPrompt?.();
      for (let i = 0; i < 20; i++) {
        const logits = model.decodeBatch(Int32Array.from([i, i + 1, i + 2]), cache);
        expect(backend.toFloat32(logits).every(Number.isFinite), `step ${i}`).toBe(true);
        logits.dispose();
      }
      prompts.forEach((p, b) => expect(cache.lengthOf(b)).toBe(p.length + 20));
      cache.dispose();
      caches.dispose();
      backend.synchronize();
      expect(backend.memory().bytesInUse).toBe(before);
    } finally {
      backend.dispose();
    }
  });
});
