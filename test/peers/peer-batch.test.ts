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
import { SeededRandom } from '../../src/core/model/seeded-random.js';

const backend = new CpuBackend();
const model = randomModel(parseModelConfig(DEMO_CONFIG, 'demo'), backend, { seed: 3, std: 0.08 });

describe.each<CacheSpec>([{ kind: 'int4', residual: 8 }, { kind: 'int2', group: 32, residual: 8 }, { kind: 'fp8' }])('$kind cache in a batch', (spec) => {
  it('a batch of mixed lengths decodes as each sequence alone', () => {
    const caches = openCacheFactory(model, spec);
    const rng = new SeededRandom(4);
    const prompts = [5, 1, 13].map((n) => Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * 256)));
    const steps = 10; // more than the residual: every sequence flushes once
    const next = prompts.map((_, b) => Array.from({ length: steps }, (_, i) => (b * 31 + i * 7) % 256));
    const alone = prompts.map((prompt, b) => {
      const cache = caches.make(32);
      model.forward(prompt, cache).dispose();
      return next[b]!.map((id) => backend.toFloat32(model.forward(Int32Array.of(id), cache)));
    });
    const cache = caches.make(32, prompts.length);
    prompts.forEach((prompt, b) => model.forward(prompt, cache, { sequence: b }).dispose());
    for (let i = 0; i < steps; i++) {
      const logits = backend.toFloat32(model.decodeBatch(Int32Array.from(next.map((ids) => ids[i]!)), cache));
      const V = logits.length / prompts.length;
      prompts.forEach((_, b) => {
        const want = alone[b]![i]!;
        const got = logits.subarray(b * V, (b + 1) * V);
        let worst = 0;
        for (let j = 0; j < V; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
        expect(worst, `sequence ${b}, step ${i}`).toBeLessThan(1e-5);
      });
    }
    prompts.forEach((p, b) => expect(cache.lengthOf(b)).toBe(p.length + steps));
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
