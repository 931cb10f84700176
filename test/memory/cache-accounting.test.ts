/** The cache arithmetic reproduces spec §7.5's table for Llama-3.1-8B (L 32, H_kv 8, D_h 128). */
import { describe, expect, it } from 'vitest';
import { cacheBytes, codebookBytes, commvqBytesPerToken, denseBytesPerToken } from '../../src/core/memory/cache-accounting.js';
import { kiviBytesPerToken, kiviCacheBytes } from '../../src/core/memory/cache-accounting.js';
import { commvqAblationBytesPerToken } from '../../src/core/memory/cache-accounting.js';

const llama = { numLayers: 32, kvHeads: 8, headDim: 128 };
const oneBit = { residuals: 11, codeBits: 1024, window: 128 };
const twoBit = { residuals: 21, codeBits: 2048, window: 128 };
const GiB = 2 ** 30;

describe('cache accounting (spec §7.5)', () => {
  it('gives the per-token, per-layer bytes of the table', () => {
    expect(denseBytesPerToken(llama)).toBe(4096); // 2048 B key + 2048 B value
    expect(commvqBytesPerToken(llama, oneBit)).toEqual({ key: 134, value: 130 }); // 132 + 2, 128 + 2
    expect(commvqBytesPerToken(llama, twoBit)).toEqual({ key: 254, value: 258 }); // 252 + 2, 256 + 2
    const perToken = (b: { key: number; value: number }) => (b.key + b.value) / 4096;
    expect(perToken(commvqBytesPerToken(llama, oneBit))).toBeCloseTo(0.0645, 4); // −93.55%
    expect(perToken(commvqBytesPerToken(llama, twoBit))).toBe(0.125); // −87.5%
  });

  it('totals at 128K tokens: 16 GiB dense; codes 1.03 and 2.0 GiB, plus the exact window', () => {
    const T = 128 * 1024;
    expect(cacheBytes(llama, T) / GiB).toBe(16);
    // the table counts codes only, i.e. a cache without the exact window: 264 (1-bit) and 512 (2-bit) bytes per
    // token and layer
    expect(cacheBytes(llama, T, { ...oneBit, window: 0 }) / GiB).toBe(1.03125);
    expect(cacheBytes(llama, T, { ...twoBit, window: 0 }) / GiB).toBe(2);
    // what the cache holds adds the window of 128 exact bf16 tokens per layer (16 MiB in all)
    expect(cacheBytes(llama, T, oneBit)).toBe((T - 128) * 264 * 32 + 128 * 4096 * 32);
    expect(cacheBytes(llama, T, twoBit)).toBe((T - 128) * 512 * 32 + 128 * 4096 * 32);
    // the exact window is held densely: a prompt shorter than the window costs what a dense cache does
    expect(cacheBytes(llama, 100, oneBit)).toBe(cacheBytes(llama, 100));
  });

  it('keeps codebooks as θ and E: well under 200 MB for 32 layers at 1 bit in 16-bit storage', () => {
    const half = codebookBytes(llama, oneBit, { dtype: 'bf16' });
    expect(half.key).toBe(32 * 11 * 8 * 128 * 64 * 2); // 2.75 MiB a layer, as the paper's θ-equivalent
    expect(half.value).toBe(32 * 1024 * 1024 * 2); // 2 MiB a layer
    expect((half.key + half.value) / 1e6).toBeLessThan(200);
    const full = codebookBytes(llama, oneBit); // f32, as the host reference keeps them
    expect((full.key + full.value) / 1e6).toBeGreaterThan(200);
  });

  it('holds 209.7 MB of θ (f32 and f16) and E (bf16) for 32 layers at 1 bit, as the device cache keeps them', () => {
    const theta = codebookBytes(llama, oneBit).key; // f32: the θ the encoder and dequantization read
    // f16: the θ attention on codes reads, 11 stages and stage 0's remainder (attention-theta.ts)
    const attention = codebookBytes(llama, { ...oneBit, residuals: 12 }, { dtype: 'f16' }).key;
    const E = codebookBytes(llama, oneBit, { dtype: 'bf16' }).value;
    expect(theta + attention + E).toBe(32 * (11 * 8 * 128 * 64 * 4 + 12 * 8 * 128 * 64 * 2 + 1024 * 1024 * 2));
    expect((theta + attention + E) / 1e6).toBeCloseTo(209.7, 1);
  });
});

describe('KIVI accounting (issue 18: the CommVQ paper’s average bits)', () => {
  it('gives KIVI-2 3.00 and KIVI-1 2.00 average bits at group 32: code bits + 32 bits of f16 scale and zero per 32 values', () => {
    // D = 1024 values per token and layer, each of keys and values
    const two = kiviBytesPerToken(llama, { bits: 2, group: 32 });
    const one = kiviBytesPerToken(llama, { bits: 1, group: 32 });
    expect(two).toEqual({ key: 384, value: 384 }); // 256 B of codes + 32 groups × 4 B
    expect(one).toEqual({ key: 256, value: 256 }); // 128 + 128
    expect((8 * (two.key + two.value)) / (2 * 1024)).toBe(3);
    expect((8 * (one.key + one.value)) / (2 * 1024)).toBe(2);
  });

  it('counts the exact tails as kiviSplit gives them, in bf16', () => {
    const k = { bits: 2 as const, group: 32, residual: 128 };
    // T = 200: keys 128 quantized + 72 exact, values 72 quantized + 128 exact; an exact row is 1024 × 2 B
    expect(kiviCacheBytes(llama, 200, k)).toBe(32 * (128 * 384 + 72 * 384 + (72 + 128) * 2048));
    expect(kiviCacheBytes(llama, 256, k)).toBe(32 * (256 * 384 + 128 * 384 + 128 * 2048)); // right after a key flush
    // at 128K the exact tails are noise: 3.00 bits within 0.3%
    const bits = (8 * kiviCacheBytes(llama, 131072, k)) / (32 * 131072 * 2 * 1024);
    expect(bits).toBeGreaterThan(3);
    expect(bits).toBeLessThan(3.01);
  });
});

describe('CommVQ ablation accounting (issue 18: compress=keys|values)', () => {
  it('keeps the half in codes as packed and pays a row of D in the exact dtype for the other', () => {
    expect(commvqAblationBytesPerToken(llama, oneBit, 'both')).toEqual(commvqBytesPerToken(llama, oneBit));
    expect(commvqAblationBytesPerToken(llama, oneBit, 'keys')).toEqual({ key: 134, value: 2048 }); // 1024 bf16 values
    expect(commvqAblationBytesPerToken(llama, twoBit, 'values')).toEqual({ key: 2048, value: 258 });
    expect(commvqAblationBytesPerToken(llama, oneBit, 'keys', 'f32')).toEqual({ key: 134, value: 4096 });
  });
});
