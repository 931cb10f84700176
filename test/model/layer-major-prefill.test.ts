/**
 * The layer-major prefill (LlamaModel.prefill): a prompt run layer by layer in row chunks gives the same logits and
 * leaves the same cache as one forward of the whole prompt — dense, CommVQ faithful (exact attention over the whole
 * prompt, now in chunks) and CommVQ strict (the decoding rule per block) — and strict equals feeding the prompt one
 * token at a time. Prompts of 1, W−1, W, W+1 and 2W+3 tokens, with and without sinks, row chunks that cut blocks;
 * a batch of mixed-length prompts equals each prompt alone. On the CPU the same rows go through the same f32 ops,
 * so the logits are equal to the bit.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { createCommvqCache } from '../../src/core/commvq/load-commvq.js';
import type { KVCache } from '../../src/core/model/kv-cache.js';
import { prefillRows } from '../../src/core/model/llama.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { randomBooks } from '../helpers/commvq-books.js';
import { fixtureDir, haveFixture } from '../helpers/fixtures.js';

const W = 8;
const LENGTHS = [1, W - 1, W, W + 1, 2 * W + 3];

describe.skipIf(!haveFixture('tiny-llama'))('layer-major prefill on tiny-llama (CPU)', () => {
  const backend = new CpuBackend();
  const { model } = loadModel(fixtureDir('tiny-llama'), { backend });
  const books = randomBooks(model, 1);
  const ids = (n: number, seed = 1) => Int32Array.from({ length: n }, (_, i) => (seed * 97 + i * 31) % model.config.vocabSize);
  type Kind = 'dense' | 'faithful' | 'strict';
  const make = (kind: Kind, capacity: number, sinks = 0, batch = 1): KVCache =>
    kind === 'dense' ? model.createDenseCache(capacity, batch) : createCommvqCache(model, books, { capacity, prefill: kind, window: W, sinks, batch });
  const f32 = (t: Parameters<CpuBackend['toFloat32']>[0]) => {
    const out = backend.toFloat32(t);
    t.dispose();
    return out;
  };
  /** The logits of the prompt's last token, then of 3 decode steps. */
  const run = (cache: KVCache, prompt: Int32Array, first: (c: KVCache) => Float32Array): Float32Array[] => {
    const out = [first(cache)];
    cache.endPrompt?.();
    for (const id of [5, 6, 7]) out.push(f32(model.forward(Int32Array.of(id), cache, { logits: 'last' })));
    cache.dispose();
    return out;
  };

  describe.each(['dense', 'faithful', 'strict'] as const)('%s cache', (kind) => {
    it.each(LENGTHS.flatMap((n) => [[n, 0], [n, 2]]))('a prompt of %i tokens, %i sinks, in row chunks of 3', (n, sinks) => {
      const prompt = ids(n);
      const capacity = n + 4;
      const whole = run(make(kind, capacity, sinks), prompt, (c) => f32(model.forward(prompt, c, { logits: 'last' })));
      const layered = run(make(kind, capacity, sinks), prompt, (c) => f32(model.prefill(prompt, c, { rows: 3 })));
      layered.forEach((l, i) => expect(l, `step ${i}`).toEqual(whole[i]));
      if (kind === 'strict') {
        // the decoding rule: the prompt fed one token at a time
        const byToken = run(make(kind, capacity, sinks), prompt, (c) => {
          let last: Float32Array = new Float32Array(0);
          for (let t = 0; t < n; t++) last = f32(model.forward(prompt.subarray(t, t + 1), c, { logits: 'last' }));
          return last;
        });
        layered.forEach((l, i) => expect(l, `step ${i} against token by token`).toEqual(byToken[i]));
      }
    });
  });

  it.each(['dense', 'faithful', 'strict'] as const)('%s: hidden states kept in host memory between layers give the same logits', (kind) => {
    const prompt = ids(2 * W + 3);
    const onDevice = run(make(kind, 40), prompt, (c) => f32(model.prefill(prompt, c, { rows: 4, hiddenOnHost: false })));
    const onHost = run(make(kind, 40), prompt, (c) => f32(model.prefill(prompt, c, { rows: 4, hiddenOnHost: true })));
    onHost.forEach((l, i) => expect(l, `step ${i}`).toEqual(onDevice[i]));
  });

  it('refuses faithful chunks fed token-major (a forward per chunk): the layer’s earlier rows are gone', () => {
    const cache = make('faithful', 32);
    model.forward(ids(10), cache).dispose();
    expect(() => model.forward(ids(4, 2), cache)).toThrow(/faithful prefill .* layer by layer/);
    cache.dispose();
  });

  it.each(['dense', 'strict'] as const)('%s: a batch of mixed-length prompts prefilled layer by layer decodes as each alone', (kind) => {
    const prompts = [3, 2 * W + 1, W].map((n, b) => ids(n, b + 2));
    const alone = prompts.map((p) => run(make(kind, 40), p, (c) => f32(model.prefill(p, c, { rows: 5 }))));
    const cache = make(kind, 40, 0, prompts.length);
    const firsts = prompts.map((p, b) => f32(model.prefill(p, cache, { sequence: b, rows: 5 })));
    firsts.forEach((l, b) => expect(l, `prompt ${b}`).toEqual(alone[b]![0]));
    cache.endPrompt?.();
    [5, 6, 7].forEach((id, i) => {
      const logits = f32(model.decodeBatch(Int32Array.from(prompts, () => id), cache));
      const V = model.config.vocabSize;
      prompts.forEach((_, b) => expect(logits.subarray(b * V, (b + 1) * V), `step ${i}, sequence ${b}`).toEqual(alone[b]![i + 1]));
    });
    cache.dispose();
  });
});

describe('prefillRows', () => {
  it('takes 4096-row chunks, and 1024 for prompts above 64K tokens (their cache and scratch already fill the card)', () => {
    expect([1, 4096, 32768, 65536].map(prefillRows)).toEqual([4096, 4096, 4096, 4096]);
    expect([65537, 131072].map(prefillRows)).toEqual([1024, 1024]);
  });
});
