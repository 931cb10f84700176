/**
 * Batches at the model level: sequences of different lengths decoded together (model.decodeBatch) give the same
 * logits as each sequence decoded alone, with the dense cache and with the CommVQ cache, across flushes of the
 * exact window. Runs on the CPU backend with the demo model's shape and random codebooks.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CommvqCache } from '../../src/core/commvq/commvq-cache.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import type { KVCache } from '../../src/core/model/kv-cache.js';
import type { LlamaModel } from '../../src/core/model/llama.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { compressorShape, initCompressor } from '../../src/core/values/value-compressor.js';
import { expectBatchDecodesAsAlone } from '../helpers/batch-alone.js';

const backend = new CpuBackend();
const model = randomModel(parseModelConfig(DEMO_CONFIG, 'demo'), backend, { seed: 3, std: 0.08 });
const W = 8;

function commvqCache(m: LlamaModel, capacity: number, batch: number): CommvqCache {
  const rng = new SeededRandom(11);
  const { numLayers, kvHeads, headDim } = m.cacheShape;
  const D = kvHeads * headDim;
  const valueShape = compressorShape(1, D);
  const keys = new Map<number, LayerKeyCodebook>();
  const values = new Map<number, { params: ReturnType<typeof initCompressor>; scale: ReturnType<CpuBackend['fromArray']> }>();
  for (let l = 0; l < numLayers; l++) {
    const theta = Float32Array.from({ length: 2 * kvHeads * 128 * (headDim / 2) }, () => 0.05 * rng.normal());
    keys.set(l, new LayerKeyCodebook({ residuals: 2, groups: kvHeads, halfSize: 64, pairs: headDim / 2 }, theta));
    values.set(l, { params: initCompressor(backend, valueShape, 7 + l), scale: backend.fromArray(Float32Array.from({ length: D }, () => 0.5 + rng.uniform()), [D], 'f32') });
  }
  return new CommvqCache(backend, m.cacheShape, { keys, values, valueShape, rope: m.rope, window: W, prefill: 'strict', capacity, batch });
}

const makers: Record<string, (capacity: number, batch: number) => KVCache> = {
  dense: (capacity, batch) => model.createDenseCache(capacity, batch),
  commvq: (capacity, batch) => commvqCache(model, capacity, batch),
};

describe.each(Object.keys(makers))('%s cache', (kind) => {
  it('a batch of mixed lengths decodes as each sequence alone', () => {
    expectBatchDecodesAsAlone(model, makers[kind]!, 6); // the 13-token prompt crosses a flush at 16
  });

  it('decodeBatch needs one token per sequence', () => {
    const cache = makers[kind]!(8, 2);
    expect(() => model.decodeBatch(Int32Array.of(1), cache)).toThrow(/1 tokens for a cache of 2 sequences/);
  });
});
