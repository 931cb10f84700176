/**
 * The layer-major prefill (LlamaModel.prefill) on the GPU: on tiny-llama, a prompt run layer by layer in row chunks
 * gives the logits of one forward of the whole prompt with the dense cache and the faithful CommVQ cache (exact
 * attention over the whole prompt), and with the strict CommVQ cache the logits of the prompt fed token-major in
 * pieces (the same decoding rule); with the hidden states in host memory too. The rows go through the same ops in
 * another grouping, and cuBLASLt picks its GEMM kernels by row count, so the logits agree to the bf16 rounding of the
 * activations (relative L2 ≤ 4·2^-8), not to the bit. Random codebooks of R = 3 (test/helpers/commvq-books.ts).
 */
import { describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { createCommvqCache } from '../../src/core/commvq/load-commvq.js';
import type { KVCache } from '../../src/core/model/kv-cache.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { randomBooks } from '../helpers/commvq-books.js';
import { relativeL2 } from '../helpers/compare.js';
import { fixtureDir, haveFixture } from '../helpers/fixtures.js';
import { BF16_EPS, SEED } from './gpu-helpers.js';

const run = cudaAvailable() && haveFixture('tiny-llama');

describe.skipIf(!run)('layer-major prefill on tiny-llama, GPU', () => {
  const backend = run ? CudaBackend.create(0) : undefined!;
  const model = run ? loadModel(fixtureDir('tiny-llama'), { backend }).model : undefined!;
  const books = run ? randomBooks(model, 1) : undefined!;
  const prompt = Int32Array.from({ length: 2 * 128 + 77 }, (_, i) => (SEED + i * 31) % 512);
  const make = (kind: 'dense' | 'faithful' | 'strict'): KVCache =>
    kind === 'dense' ? model.createDenseCache(prompt.length + 4) : createCommvqCache(model, books, { capacity: prompt.length + 4, prefill: kind });
  const logits = (cache: KVCache, feed: (c: KVCache) => ReturnType<typeof model.forward>): Float32Array[] => {
    const out = [backend.toFloat32(feed(cache))];
    cache.endPrompt?.();
    for (const id of [5, 6, 7]) out.push(backend.toFloat32(model.forward(Int32Array.of(id), cache, { logits: 'last' })));
    cache.dispose();
    return out;
  };
  const close = (got: Float32Array[], want: Float32Array[], what: string) =>
    got.forEach((g, i) => expect(relativeL2(g, want[i]!), `${what}, step ${i} (seed ${SEED})`).toBeLessThan(4 * BF16_EPS));

  it.each(['dense', 'faithful'] as const)('%s: layer by layer in chunks of 100 rows equals one forward', (kind) => {
    const whole = logits(make(kind), (c) => model.forward(prompt, c, { logits: 'last' }));
    close(logits(make(kind), (c) => model.prefill(prompt, c, { rows: 100 })), whole, 'device hidden states');
    close(logits(make(kind), (c) => model.prefill(prompt, c, { rows: 100, hiddenOnHost: true })), whole, 'host hidden states');
  });

  it('strict: layer by layer (whole W-blocks in one launch) equals the prompt fed token-major in pieces', () => {
    const pieces = logits(make('strict'), (c) => {
      for (let at = 0; ; at += 100) {
        const l = model.forward(prompt.subarray(at, Math.min(prompt.length, at + 100)), c, { logits: 'last' });
        if (at + 100 >= prompt.length) return l;
        l.dispose();
      }
    });
    close(logits(make('strict'), (c) => model.prefill(prompt, c, { rows: 128 })), pieces, 'chunks of 128 rows');
    close(logits(make('strict'), (c) => model.prefill(prompt, c, { rows: 100 })), pieces, 'chunks of 100 rows');
  });
});
