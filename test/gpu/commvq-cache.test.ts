/**
 * The CommVQ cache on the device store (src/core/commvq/device-store.ts) against the same cache on the host store
 * (host-store.ts, the reference), fed identical bf16 inputs: prompts of 1, W−1, W, W+1 and 2W+3 tokens then decoding across
 * flushes, faithful and strict prefill, with and without sinks, strict prompts in several chunks; and at the model
 * level, a batch of mixed lengths equal to each sequence decoded alone (to the rounding of batched GEMMs). What may
 * differ between the stores, and the bounds: commvq-helpers.ts.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { ropeF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { CommvqCache, type PrefillMode } from '../../src/core/commvq/commvq-cache.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import type { KVCache } from '../../src/core/model/kv-cache.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { StepInputs } from '../../src/core/model/step-inputs.js';
import type { Backend } from '../../src/core/backend/backend.js';
import { bf16, D, randomBooks, ROPE, SHAPE, worstError } from './commvq-helpers.js';
import { Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();
const W = 8;
const shape = SHAPE;
const rope = ROPE;
const codebooks = (seed: number) => randomBooks(seed);

describe.skipIf(!gpu)('CommvqCache on the device store against the host store', () => {
  const cases: [PrefillMode, number, number[]][] = [
    ['faithful', 0, [1]], ['faithful', 0, [W - 1]], ['faithful', 0, [W]], ['faithful', 0, [W + 1]], ['faithful', 2, [2 * W + 3]],
    ['strict', 0, [1]], ['strict', 0, [W]], ['strict', 0, [2 * W + 3]], ['strict', 2, [2 * W + 3]], ['strict', 0, [5, 9, W, 3]],
  ];
  it.each(cases)('%s prefill, %i sinks, prompt chunks %j, then 20 decode steps', (mode, sinks, chunks) => {
    const cuda = new CudaBackend();
    const cpu = new CpuBackend();
    const books = codebooks(SEED);
    const capacity = 128;
    const options = { ...books, rope, window: W, sinks, prefill: mode, capacity };
    const host = new CommvqCache(cpu, shape, options);
    const device = new CommvqCache(cuda, shape, options);
    const rng = new Rng(SEED + 1);
    let start = 0;
    const run = (T: number) => {
      const positions = Int32Array.from({ length: T }, (_, i) => start + i);
      const kPre = bf16(Float32Array.from({ length: T * D }, () => rng.normal()));
      const k = bf16(ropeF32(kPre, positions, rope));
      const v = bf16(Float32Array.from({ length: T * D }, () => rng.normal()));
      const q = bf16(ropeF32(Float32Array.from({ length: T * shape.queryHeads * 64 }, () => rng.normal()), positions, rope));
      const outputs = ([[cpu, host], [cuda, device]] as [Backend, KVCache][]).map(([b, cache]) => {
        const step = StepInputs.create(b, new Int32Array(T), start);
        const t = (a: Float32Array, w: number) => b.fromArray(a, [T, w], b.activationDType);
        let out: Float32Array = new Float32Array(0);
        for (let l = 0; l < shape.numLayers; l++) {
          cache.append(l, { kPre: t(kPre, D), k: t(k, D), v: t(v, D) }, step);
          out = b.toFloat32(cache.attend(l, t(q, shape.queryHeads * 64), step));
        }
        step.dispose();
        return out;
      });
      start += T;
      return worstError(outputs[1]!, outputs[0]!);
    };
    for (const T of chunks) {
      if (mode === 'faithful' && start > 0) break;
      const { bad, worst } = run(T);
      expect(bad, `seed ${SEED}: prompt chunk of ${T} at ${start - T}: ${bad} outputs off (worst ${worst.toExponential(2)} of max)`).toBe(0);
    }
    for (let i = 0; i < 20; i++) {
      const { bad, worst } = run(1);
      expect(bad, `seed ${SEED}: decode step at ${start - 1}: ${bad} outputs off (worst ${worst.toExponential(2)} of max)`).toBe(0);
    }
    expect(device.length).toBe(start);
    // the packed state: the same codes up to near-ties
    for (let l = 0; l < shape.numLayers; l++) {
      const want = host.dequantized(l);
      const mine = device.dequantized(l);
      expect(mine.positions).toEqual(want.positions);
      const { bad } = worstError(mine.keys, want.keys);
      expect(bad, `seed ${SEED}: layer ${l} dequantized keys`).toBeLessThanOrEqual(Math.ceil(0.01 * want.keys.length));
    }
    device.dispose();
  });

  // W = 128: whole blocks of a strict chunk attend in one switched launch; chunks of 100 start inside blocks
  it.each([['strict', 100], ['strict', 256], ['faithful', 100]] as const)('%s prefill, W = 128, a prompt of 3W + 37 fed layer by layer in chunks of %i, then 5 decode steps', (mode, chunk) => {
    const cuda = new CudaBackend();
    const cpu = new CpuBackend();
    const options = { ...codebooks(SEED), rope, window: 128, prefill: mode, capacity: 512 };
    const caches = [[cpu, new CommvqCache(cpu, shape, options)], [cuda, new CommvqCache(cuda, shape, options)]] as [Backend, CommvqCache][];
    const rng = new Rng(SEED + 3);
    const rows = (start: number, T: number) => {
      const positions = Int32Array.from({ length: T }, (_, i) => start + i);
      const kPre = bf16(Float32Array.from({ length: T * D }, () => rng.normal()));
      const q = bf16(ropeF32(Float32Array.from({ length: T * shape.queryHeads * 64 }, () => rng.normal()), positions, rope));
      return { start, T, kPre, k: bf16(ropeF32(kPre, positions, rope)), v: bf16(Float32Array.from({ length: T * D }, () => rng.normal())), q };
    };
    const T = 3 * 128 + 37;
    const chunks = Array.from({ length: Math.ceil(T / chunk) }, (_, c) => rows(c * chunk, Math.min(chunk, T - c * chunk)));
    const feed = (r: ReturnType<typeof rows>, layers: number[], prompt: boolean): Float32Array[] =>
      caches.map(([b, cache]) => {
        const step = prompt ? StepInputs.prompt(b, new Int32Array(r.T), r.start) : StepInputs.create(b, new Int32Array(r.T), r.start);
        const t = (a: Float32Array, w: number) => b.fromArray(a, [r.T, w], b.activationDType);
        let out: Float32Array = new Float32Array(0);
        for (const l of layers) {
          cache.append(l, { kPre: t(r.kPre, D), k: t(r.k, D), v: t(r.v, D) }, step);
          out = b.toFloat32(cache.attend(l, t(r.q, shape.queryHeads * 64), step));
        }
        step.dispose();
        return out;
      });
    for (let l = 0; l < shape.numLayers; l++) {
      for (const r of chunks) {
        const [want, got] = feed(r, [l], true);
        const { bad, worst } = worstError(got!, want!);
        expect(bad, `seed ${SEED}: layer ${l}, chunk at ${r.start}: ${bad} outputs off (worst ${worst.toExponential(2)} of max)`).toBe(0);
      }
    }
    caches.forEach(([, c]) => c.endPrompt());
    for (let i = 0; i < 5; i++) {
      const [want, got] = feed(rows(T + i, 1), [0, 1], false);
      const { bad, worst } = worstError(got!, want!);
      expect(bad, `seed ${SEED}: decode step ${i}: ${bad} outputs off (worst ${worst.toExponential(2)} of max)`).toBe(0);
    }
    caches[1]![1].dispose();
  });

  /** A random bf16 model of 2 layers (4 query heads, 2 kv heads of 64) and strict device caches of 64 tokens for it. */
  function tinyModel() {
    const cuda = new CudaBackend();
    const config = parseModelConfig({
      architectures: ['LlamaForCausalLM'], vocab_size: 300, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000,
    }, 'test config');
    const model = randomModel(config, cuda, { seed: SEED, std: 0.05, dtype: 'bf16' });
    const books = codebooks(SEED);
    const make = (batch: number) => new CommvqCache(cuda, model.cacheShape, { ...books, rope: model.rope, window: W, prefill: 'strict', capacity: 64, batch });
    return { cuda, model, make };
  }

  it('endPrompt frees the strict prefill scratch ([capacity, D] bf16 for K and V), and decoding goes on as without it', () => {
    const { cuda, model, make } = tinyModel();
    const prompt = Int32Array.from({ length: 2 * W + 5 }, (_, i) => (7 * i + 3) % 300);
    const [kept, ended] = [make(1), make(1)];
    for (const cache of [kept, ended]) model.forward(prompt, cache).dispose();
    cuda.synchronize();
    const before = cuda.memory().bytesInUse;
    ended.endPrompt();
    // the scratch, and with it the prompt's encoder memo (the layer's θ tables and f32 encoder weights, made once per
    // layer and prompt instead of per row chunk)
    const freed = before - cuda.memory().bytesInUse;
    expect(freed).toBeGreaterThanOrEqual(2 * 64 * D * 2);
    const again = cuda.memory().bytesInUse;
    ended.endPrompt();
    expect(cuda.memory().bytesInUse, 'a second endPrompt has nothing left to free').toBe(again);
    for (const id of [11, 12, 13]) {
      const want = cuda.toFloat32(model.forward(Int32Array.of(id), kept));
      expect(cuda.toFloat32(model.forward(Int32Array.of(id), ended))).toEqual(want);
    }
    kept.dispose();
    ended.dispose();
  });

  it('a batch of mixed lengths decodes as each sequence alone', () => {
    const { cuda, model, make } = tinyModel();
    const rng = new Rng(SEED + 2);
    const prompts = [3, 17, 9].map((n) => Int32Array.from({ length: n }, () => rng.int(300)));
    const steps = 10;
    const next = prompts.map(() => Int32Array.from({ length: steps }, () => rng.int(300)));
    const alone = prompts.map((p, b) => {
      const cache = make(1);
      model.forward(p, cache).dispose();
      const out = Array.from(next[b]!, (id) => cuda.toFloat32(model.forward(Int32Array.of(id), cache)));
      cache.dispose();
      return out;
    });
    const cache = make(prompts.length);
    prompts.forEach((p, b) => model.forward(p, cache, { sequence: b }).dispose());
    for (let i = 0; i < steps; i++) {
      const logits = cuda.toFloat32(model.decodeBatch(Int32Array.from(next, (ids) => ids[i]!), cache));
      const V = logits.length / prompts.length;
      prompts.forEach((_, b) => {
        // attention on codes is batch-invariant; the model's GEMMs are not (cuBLASLt picks kernels by row count),
        // so logits agree to bf16 rounding of the activations, not bit for bit
        const want = alone[b]![i]!;
        const got = logits.subarray(b * V, (b + 1) * V);
        const max = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const worst = want.reduce((m, x, j) => Math.max(m, Math.abs(got[j]! - x)), 0);
        expect(worst, `seed ${SEED}: sequence ${b}, step ${i}`).toBeLessThanOrEqual(0.02 * max);
      });
    }
    cache.dispose();
  });
});
