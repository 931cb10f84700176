/**
 * Random CommVQ codebooks on a GPU (src/core/commvq/random-codebooks.ts): kept on the host, they are the very draws
 * made on the device, copied, and nothing of them stays in device memory; the cache factory of a random-weights run
 * (commvq:bits=1 alone) makes device caches from them that prefill past a block and decode, and gives all back.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { openCacheFactory } from '../../src/core/cache-factory.js';
import { disposeCodebookValues, randomCodebooks } from '../../src/core/commvq/random-codebooks.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { disposeWeights } from '../../src/core/model/weights.js';

const gpu = cudaAvailable();

describe.skipIf(!gpu)('random codebooks on the GPU', () => {
  const config = parseModelConfig({
    architectures: ['LlamaForCausalLM'], vocab_size: 1000, hidden_size: 512, intermediate_size: 1024, num_hidden_layers: 2,
    num_attention_heads: 8, num_key_value_heads: 2, head_dim: 128, max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 10000,
  }, 'config.json');

  it("values: 'host' holds the device draws, copied to host tensors, and leaves no device memory behind", () => {
    const cuda = new CudaBackend();
    const model = randomModel(config, cuda, { seed: 0, dtype: 'bf16' });
    const host = new CpuBackend();
    try {
      disposeCodebookValues(randomCodebooks(model, 1)); // anything drawing creates once exists before the count
      const before = cuda.memory().bytesInUse;
      const kept = randomCodebooks(model, 2, { values: 'host' });
      expect(cuda.memory().bytesInUse).toBe(before);
      const drawn = randomCodebooks(model, 2);
      for (const l of [0, 1]) {
        const [a, b] = [kept.values.get(l)!, drawn.values.get(l)!];
        for (const name of ['w1', 'w2', 'b2', 'codebook'] as const) {
          expect(a.params[name].device).toBe('cpu');
          expect(b.params[name].device).toBe(cuda.device);
          expect(host.toFloat32(a.params[name])).toEqual(cuda.toFloat32(b.params[name]));
        }
        expect(kept.keys.get(l)!.theta).toEqual(drawn.keys.get(l)!.theta);
      }
      disposeCodebookValues(drawn);
      disposeCodebookValues(kept);
      expect(cuda.memory().bytesInUse).toBe(before);
    } finally {
      disposeWeights(model.weights);
    }
  });

  it('commvq:bits=1 with random: device caches that prefill past a block and decode; dispose gives everything back', () => {
    const cuda = new CudaBackend();
    const model = randomModel(config, cuda, { seed: 0, dtype: 'bf16' });
    const prompt = Array.from({ length: 300 }, (_, i) => (7 * i) % 1000);
    const once = () => {
      const caches = openCacheFactory(model, { kind: 'commvq', bits: 1, prefill: 'strict', chunk: 100 }, { random: true });
      const cache = caches.make(prompt.length + 8);
      try {
        return { description: caches.description, out: generateGreedy(model, prompt, { maxNewTokens: 8, cache, prefillChunk: 100 }) };
      } finally {
        cache.dispose();
        caches.dispose();
        cuda.synchronize();
      }
    };
    try {
      const first = once(); // what the backend creates once and keeps (cuBLAS workspace, tables) exists after it
      const before = cuda.memory().bytesInUse;
      const second = once();
      expect(cuda.memory().bytesInUse).toBe(before);
      expect(second.description).toMatchObject({ label: 'commvq-1bit-random', codebooks: null, random_codebooks: true, kv_dtype: 'bf16', prefill_chunk: 100 });
      expect(second.out.outputIds).toHaveLength(8);
      expect(second.out.outputIds.every((id) => id >= 0 && id < 1000)).toBe(true);
      expect(second.out.outputIds).toEqual(first.out.outputIds); // the same codebooks each time
    } finally {
      disposeWeights(model.weights);
    }
  });
});
