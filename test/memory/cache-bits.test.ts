/**
 * cacheAverageBits against the CommVQ paper's "average bits" at Llama-3.1-8B's shapes (issue 18: KIVI-2 3.00, KIVI-1
 * 2.00, CommVQ-2 2.00, CommVQ-1 1.03), the HF int caches' bits + 32/group, fp8's 8 + 32/D_h and dense's dtype width;
 * a CommVQ ablation pays the exact half at the dtype's width.
 */
import { describe, expect, it } from 'vitest';
import { cacheAverageBits } from '../../src/core/memory/cache-bits.js';

const llama8b = { numLayers: 32, kvHeads: 8, headDim: 128 };

describe('cacheAverageBits', () => {
  it("the paper's numbers at Llama-3.1-8B's shapes", async () => {
    const bits = (spec: Parameters<typeof cacheAverageBits>[0], dtype: 'bf16' | 'f32' = 'bf16') => cacheAverageBits(spec, llama8b, dtype);
    expect(await bits({ kind: 'kivi', bits: 2 })).toBe(3);
    expect(await bits({ kind: 'kivi', bits: 1 })).toBe(2);
    expect((await bits({ kind: 'commvq', bits: 2 })).toFixed(2)).toBe('2.00');
    expect((await bits({ kind: 'commvq', bits: 1 })).toFixed(2)).toBe('1.03');
    expect(await bits({ kind: 'int4' })).toBe(4.5);
    expect(await bits({ kind: 'int2', group: 32 })).toBe(3);
    expect(await bits({ kind: 'fp8' })).toBe(8.25);
    expect(await bits({ kind: 'dense' })).toBe(16);
    expect(await bits({ kind: 'dense' }, 'f32')).toBe(32);
  });

  it('an ablation keeps its exact half at the dtype width: keys in codes (1.03-bit keys) and bf16 values', async () => {
    const keysOnly = await cacheAverageBits({ kind: 'commvq', bits: 1, compress: 'keys' }, llama8b, 'bf16');
    const both = await cacheAverageBits({ kind: 'commvq', bits: 1 }, llama8b, 'bf16');
    // 134 bytes of key codes and norm, then 1024 bf16 values: (134 + 2048)·8 / 2048
    expect(keysOnly).toBeCloseTo(((134 + 2048) * 8) / 2048, 12);
    expect(keysOnly).toBeGreaterThan(both);
  });
});
