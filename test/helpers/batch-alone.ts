/**
 * The batching check every cache kind shares: three prompts of mixed lengths (5, 1 and 13 tokens, seeded), decoded
 * `steps` steps together with model.decodeBatch, must give each sequence the logits it gets decoded alone in a cache
 * of its own (to 1e-5), and end with each sequence's length.
 *
 *   expectBatchDecodesAsAlone(model, (capacity, batch) => model.createDenseCache(capacity, batch), 6);
 */
import { expect } from 'vitest';
import type { KVCache } from '../../src/core/model/kv-cache.js';
import type { LlamaModel } from '../../src/core/model/llama.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';

export function expectBatchDecodesAsAlone(model: LlamaModel, make: (capacity: number, batch: number) => KVCache, steps: number, capacity = 32): void {
  const backend = model.backend;
  const rng = new SeededRandom(4);
  const prompts = [5, 1, 13].map((n) => Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * 256)));
  const next = prompts.map((_, b) => Array.from({ length: steps }, (_, i) => (b * 31 + i * 7) % 256));
  // alone: one cache per sequence
  const alone = prompts.map((prompt, b) => {
    const cache = make(capacity, 1);
    model.forward(prompt, cache).dispose();
    return next[b]!.map((id) => backend.toFloat32(model.forward(Int32Array.of(id), cache)));
  });
  // together: prompts one sequence at a time, then batched decode steps
  const cache = make(capacity, prompts.length);
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
}
