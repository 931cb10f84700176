/**
 * KIVI caches at the model level on the CPU: sequences of mixed lengths decoded together (model.decodeBatch) give the
 * logits each gives alone, across key flushes (R = 8) and value flushes; and the factory's description, and its
 * refusal of a device without kernels.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { openCacheFactory } from '../../src/core/cache-factory.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import type { LlamaModel } from '../../src/core/model/llama.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { KiviCache } from '../../src/core/peers/kivi-cache.js';
import { openKiviFactory } from '../../src/core/peers/kivi-factory.js';
import { expectBatchDecodesAsAlone } from '../helpers/batch-alone.js';

const backend = new CpuBackend();
const model = randomModel(parseModelConfig(DEMO_CONFIG, 'demo'), backend, { seed: 3, std: 0.08 });
const o = { bits: 2 as const, group: 4, residual: 8 };

describe('KiviCache in a batch', () => {
  it('a batch of mixed lengths decodes as each sequence alone', () => {
    // lengths reach 11, 7 and 19: key flushes at 8 and 16, value flushes past 8
    expectBatchDecodesAsAlone(model, (capacity, batch) => new KiviCache(backend, model.cacheShape, capacity, batch, o), 6);
  });

  it('a layer-major prefill in row chunks attends exactly over the whole prompt, and frees each layer as it finishes', () => {
    const ids = Int32Array.from({ length: 21 }, (_, i) => (5 * i + 3) % 256);
    const whole = new KiviCache(backend, model.cacheShape, 32, 1, o);
    const want = backend.toFloat32(model.forward(ids, whole)).slice(-model.config.vocabSize); // the last token's logits
    const chunked = new KiviCache(backend, model.cacheShape, 32, 1, o);
    const freed: number[] = [];
    const endLayer = chunked.endPromptLayer.bind(chunked);
    chunked.endPromptLayer = (layer, sequence) => {
      freed.push(layer);
      endLayer(layer, sequence);
    };
    const got = backend.toFloat32(model.prefill(ids, chunked, { rows: 8 })); // chunks of 8, 8, 5 through each layer
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(freed).toEqual(Array.from({ length: model.config.numLayers }, (_, l) => l));
  });

  it('cannot rewind: its keys are quantized in blocks', () => {
    const cache = new KiviCache(backend, model.cacheShape, 16, 1, o);
    model.forward(Int32Array.of(1, 2, 3), cache).dispose();
    expect(() => cache.seek(1)).toThrow(/cannot rewind/);
    cache.seek(3);
  });
});

describe('openCacheFactory with kivi', () => {
  it('describes the cache by bits, group and residual (the paper’s defaults)', () => {
    const caches = openCacheFactory(model, { kind: 'kivi', bits: 2 });
    expect(caches.description).toMatchObject({ mode: 'kivi', label: 'kivi-2bit-g32-r128', bits: 2, prefill: 'exact', codebooks: null });
    expect(openCacheFactory(model, { kind: 'kivi', bits: 1, group: 16, residual: 64 }).description.label).toBe('kivi-1bit-g16-r64');
    const cache = caches.make(8, 2);
    expect([cache.batch, cache.capacity, cache.replayable]).toEqual([2, 8, false]);
  });

  it('makes the CPU reference on a backend that is not CUDA (the GPU twin is test/gpu/peer-caches.test.ts’s)', () => {
    const other = { backend: { device: 'cuda:0', activationDType: 'bf16' }, cacheShape: model.cacheShape } as unknown as LlamaModel;
    expect(openKiviFactory(other, { kind: 'kivi', bits: 2 }).make(8)).toBeInstanceOf(KiviCache);
  });

  it('refuses a group that does not divide head_dim', () => {
    expect(() => openCacheFactory(model, { kind: 'kivi', bits: 2, group: 48, residual: 96 }).make(8)).toThrow(/group=48 does not divide head_dim 64/);
  });
});
