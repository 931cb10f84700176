/**
 * KIVI's split of T tokens: the boundaries written out, and a replay of the reference code's prefill-then-decode steps
 * (jy-yuan/KIVI models/llama_kivi.py) showing the split depends on T alone.
 */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../src/core/errors.js';
import { type KiviPart, kiviSplit } from '../../src/core/quant/kivi.js';

const O = { group: 32, residual: 128 };

/** The reference's bookkeeping: prefill `prompt` tokens, then decode one at a time up to `total`. */
function replay(prompt: number, total: number, part: KiviPart, R: number): { quantized: number; exact: number } {
  let quantized: number;
  let exact: number;
  if (part === 'keys') {
    exact = prompt % R; // prefill: the last T mod R keys stay full
    quantized = prompt - exact;
  } else {
    exact = Math.min(prompt, R); // prefill: the last R values stay full
    quantized = prompt - exact;
  }
  for (let t = prompt; t < total; t++) {
    exact++;
    if (part === 'keys' && exact === R) [quantized, exact] = [quantized + R, 0]; // flush all R, R/G groups
    if (part === 'values' && exact > R) [quantized, exact] = [quantized + 1, exact - 1]; // flush the oldest token
  }
  return { quantized, exact };
}

describe('kiviSplit at the boundaries (group 32, residual 128)', () => {
  // [T, keys quantized, keys exact, values quantized, values exact]
  const table: [number, number, number, number, number][] = [
    [0, 0, 0, 0, 0],
    [1, 0, 1, 0, 1],
    [31, 0, 31, 0, 31], // group − 1
    [32, 0, 32, 0, 32], // group: keys still wait for a whole residual
    [127, 0, 127, 0, 127], // residual − 1
    [128, 128, 0, 0, 128], // residual: keys flush all 128 (4 groups); values keep the last 128
    [129, 128, 1, 1, 128],
    [159, 128, 31, 31, 128], // residual + group − 1
    [160, 128, 32, 32, 128], // residual + group
    [255, 128, 127, 127, 128],
    [256, 256, 0, 128, 128], // 2·residual: the second key flush
    [257, 256, 1, 129, 128],
  ];
  for (const [T, kq, ke, vq, ve] of table) {
    it(`T = ${T}`, () => {
      expect(kiviSplit(T, 'keys', O)).toEqual({ quantized: kq, exact: ke });
      expect(kiviSplit(T, 'values', O)).toEqual({ quantized: vq, exact: ve });
    });
  }
});

describe('kiviSplit as a rule', () => {
  it("equals the reference's prefill-then-decode bookkeeping for every prompt length and step", () => {
    for (const [group, residual] of [[32, 128], [32, 32], [4, 12]] as const) {
      for (const part of ['keys', 'values'] as KiviPart[]) {
        for (let prompt = 0; prompt <= 3 * residual; prompt++) {
          for (const total of [prompt, prompt + 1, prompt + group - 1, prompt + residual, prompt + 2 * residual + 1]) {
            expect(kiviSplit(total, part, { group, residual }), `${part} G${group} R${residual} prompt ${prompt} → T ${total}`).toEqual(replay(prompt, total, part, residual));
          }
        }
      }
    }
  });

  it('quantizes keys in whole groups and fewer than residual stay exact; values keep exactly min(T, residual)', () => {
    for (let T = 0; T <= 1000; T++) {
      const k = kiviSplit(T, 'keys', O);
      expect(k.quantized % O.group).toBe(0);
      expect(k.exact).toBeLessThan(O.residual);
      expect(k.quantized + k.exact).toBe(T);
      expect(kiviSplit(T, 'values', O).exact).toBe(Math.min(T, O.residual));
    }
  });

  it('refuses a residual that is not a positive multiple of group, and bad counts, by option name', () => {
    expect(() => kiviSplit(10, 'keys', { group: 32, residual: 100 })).toThrow(OptionError);
    expect(() => kiviSplit(10, 'keys', { group: 32, residual: 100 })).toThrow(/^residual 100: KIVI's residual is a positive multiple of group \(32\)$/);
    expect(() => kiviSplit(10, 'keys', { group: 32, residual: 0 })).toThrow(/^residual 0:/);
    expect(() => kiviSplit(10, 'values', { group: 0, residual: 128 })).toThrow(/^group 0:/);
    expect(() => kiviSplit(-1, 'values', O)).toThrow(/^tokens -1:/);
    expect(() => kiviSplit(1.5, 'keys', O)).toThrow(/^tokens 1.5:/);
  });
});
