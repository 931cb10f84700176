/**
 * The peer caches at the model level (CPU, the demo model's shape with random weights): a batch of mixed lengths
 * decoded together (model.decodeBatch) gives each sequence's logits as decoding it alone does, across int4's flushes
 * (residual 8) and with fp8; and the cache factory describes each kind as results record it.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { openCacheFactory } from '../../src/core/cache-factory.js';
import type { CacheSpec } from '../../src/core/cache-spec.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import { randomModel } from '../../src/core/model/random-model.js';
import { expectBatchDecodesAsAlone } from '../helpers/batch-alone.js';

const backend = new CpuBackend();
const model = randomModel(parseModelConfig(DEMO_CONFIG, 'demo'), backend, { seed: 3, std: 0.08 });

describe.each<CacheSpec>([{ kind: 'int4', residual: 8 }, { kind: 'int2', group: 32, residual: 8 }, { kind: 'fp8' }])('$kind cache in a batch', (spec) => {
  it('a batch of mixed lengths decodes as each sequence alone', () => {
    const caches = openCacheFactory(model, spec);
    expectBatchDecodesAsAlone(model, (capacity, batch) => caches.make(capacity, batch), 10); // more than the residual: every sequence flushes once
  });
});

describe('peer cache descriptions', () => {
  it('name the kind, its bits and its options', () => {
    const d = (spec: CacheSpec) => openCacheFactory(model, spec).description;
    expect(d({ kind: 'int4' })).toEqual({ mode: 'int4', label: 'int4-g64', bits: 4, kv_dtype: 'f32', prefill: 'exact', codebooks: null, value_encoding: null, seed: null, group: 64, residual: 128 });
    expect(d({ kind: 'int2', group: 32, residual: 64 })).toMatchObject({ mode: 'int2', label: 'int2-g32-r64', bits: 2, group: 32, residual: 64 });
    expect(d({ kind: 'fp8' })).toEqual({ mode: 'fp8', label: 'fp8', bits: 8, kv_dtype: 'f32', prefill: 'exact', codebooks: null, value_encoding: null, seed: null });
  });
});
