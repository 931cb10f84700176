/**
 * CommVQ's sizes by bit width (src/core/commvq/geometry.ts), the one place that maps bits to R and N_c, holds W and
 * names codebook files: the values the paper and the reference use, the value compressor's N_c taken from it, and the
 * one answer to a bit width that is not 1 or 2.
 */
import { describe, expect, it } from 'vitest';
import { commvqGeometry, DEFAULT_WINDOW, keyCodebookFileName, RESIDUALS_FOR_BITS, toBits, valueCodebookFileName } from '../../src/core/commvq/geometry.js';
import { OptionError } from '../../src/core/errors.js';
import { compressorShape } from '../../src/core/values/value-compressor.js';

describe('CommVQ geometry', () => {
  it('maps bits to R = 11 or 21 and N_c = 2·floor(D·bits/2), with W = 128 (spec §3.7, §5.2)', () => {
    expect(RESIDUALS_FOR_BITS).toEqual({ 1: 11, 2: 21 });
    expect(DEFAULT_WINDOW).toBe(128);
    expect(commvqGeometry(1, 1024)).toEqual({ residuals: 11, codeBits: 1024, window: 128 }); // Llama-3.1-8B: D = 8·128
    expect(commvqGeometry(2, 1024)).toEqual({ residuals: 21, codeBits: 2048, window: 128 });
    expect(commvqGeometry(1, 3).codeBits).toBe(2); // an odd width rounds the 2-bit groups down
    for (const bits of [1, 2] as const) for (const D of [3, 64, 1024]) expect(compressorShape(bits, D).codeBits).toBe(commvqGeometry(bits, D).codeBits);
  });

  it('names the codebook files as train-key and train-value write them', () => {
    expect(keyCodebookFileName('em', 1)).toBe('key-codebook-em-1bit.arrow');
    expect(keyCodebookFileName('e2e', 2)).toBe('key-codebook-e2e-2bit.arrow');
    expect(valueCodebookFileName(2)).toBe('value-codebook-2bit.arrow');
  });

  it('takes bit widths 1 and 2 only, with one message for anything else', () => {
    expect([toBits('1'), toBits(2), toBits(' 2 ')]).toEqual([1, 2, 2]);
    for (const bad of [3, 0, '1.0', '', 'one']) {
      expect(() => toBits(bad)).toThrow(OptionError);
      expect(() => toBits(bad)).toThrow(`bits ${bad}: CommVQ bit widths are 1 and 2`);
    }
  });
});
