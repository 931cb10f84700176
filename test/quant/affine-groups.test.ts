/**
 * Affine groups: hand-written layouts for both axes, ties, constant groups, refusals, and random round trips within
 * the format's bound. The bound, for a group with min, max, L = 2^bits − 1, s = (max − min)/L and stored s′, z′:
 *   x inside [z′, z′ + L·s′]: the nearest code is within s′/2;
 *   x below z′ (only when z′ rounded above min): clamped to q = 0, off by z′ − x ≤ |min − z′|;
 *   x above z′ + L·s′: clamped to q = L, off by x − z′ − L·s′ ≤ L·|s − s′| + |min − z′|.
 * So |x − x̂| ≤ max(s′/2, L·|s − s′| + |min − z′|), plus f32 arithmetic: (x − z′)/s′ rounded twice can move a code
 * by one only within 2^−23·L of a tie, and x̂ is rounded once; 2^−20·max|x| covers both.
 */
import { describe, expect, it } from 'vitest';
import { CommvqError } from '../../src/core/errors.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { type AffineAxis, type AffineStoredDType, dequantizeAffine, quantizeAffine } from '../../src/core/quant/affine-groups.js';
import { CODE_BITS, unpackCodes } from '../../src/core/quant/pack-codes.js';
import { roundF16 as f16 } from '../../src/core/tensor/dtype.js';


describe('quantizeAffine by hand', () => {
  it("'token': groups of channels in a row, scales [T, C/group]", () => {
    const x = Float32Array.of(0, 1, 2, 3, 10, 10, 10, 10); // [2, 4]
    const g = quantizeAffine(x, 2, 4, 'token', { bits: 2, group: 4 });
    expect([...g.scales]).toEqual([1, 0]);
    expect([...g.zeros]).toEqual([0, 10]);
    expect([...g.codes]).toEqual([0b11_10_01_00, 0]); // codes [0, 1, 2, 3] and [0, 0, 0, 0]
    expect(dequantizeAffine(g)).toEqual(x);
  });

  it("'channel': groups of tokens in a column, scales [T/group, C]", () => {
    // x [4, 2]; column 0 groups [0, 3], [5, 5]; column 1 groups [1, -1], [2, 4]
    const x = Float32Array.of(0, 1, 3, -1, 5, 2, 5, 4);
    const g = quantizeAffine(x, 4, 2, 'channel', { bits: 1, group: 2 });
    expect([...g.scales]).toEqual([3, 2, 0, 2]); // [[3, 2], [0, 2]]
    expect([...g.zeros]).toEqual([0, -1, 5, 2]);
    expect([...unpackCodes(g.codes, 4, 2, 1)]).toEqual([0, 1, 1, 0, 0, 0, 0, 1]);
    expect([...g.codes]).toEqual([0b10, 0b01, 0b00, 0b10]); // one byte a token
    expect(dequantizeAffine(g)).toEqual(x);
  });

  it('rounds ties to even', () => {
    // one group, min 0 and max 3, so scale 1 and zero 0: 0.5 → 0, 1.5 → 2, 2.5 → 2 (ties to even); 3 → 3
    const g = quantizeAffine(Float32Array.of(0, 0.5, 1.5, 2.5, 3, 0, 0, 0), 1, 8, 'token', { bits: 2, group: 8 });
    expect([...unpackCodes(g.codes, 1, 8, 2)]).toEqual([0, 0, 2, 2, 3, 0, 0, 0]);
  });

  it('stores f16 values when stored is f16, and computes codes from them', () => {
    const x = Float32Array.of(0.1, 0.2, 0.7, 1.3); // 0.1 and (1.3 − 0.1)/15 are not f16 values
    const g = quantizeAffine(x, 1, 4, 'token', { bits: 4, group: 4, stored: 'f16' });
    expect(g.zeros[0]).toBe(f16(Math.fround(0.1)));
    expect(g.scales[0]).toBe(f16((Math.fround(1.3) - Math.fround(0.1)) / 15));
    const q = unpackCodes(g.codes, 1, 4, 4);
    for (let i = 0; i < 4; i++) expect(q[i]).toBe(Math.round((x[i]! - g.zeros[0]!) / g.scales[0]!));
  });
});

describe('constant groups', () => {
  it('give x̂ = x exactly with f32 storage, for any f32 value', () => {
    for (const axis of ['token', 'channel'] as AffineAxis[]) {
      for (const v of [0, -0.1, 3.7e-5, 12345.678, -1e30, 2 ** -140]) {
        const x = new Float32Array(8).fill(v);
        const g = quantizeAffine(x, axis === 'token' ? 1 : 8, axis === 'token' ? 8 : 1, axis, { bits: 2, group: 8, stored: 'f32' });
        expect(g.scales[0]).toBe(0);
        expect([...unpackCodes(g.codes, g.rows, g.cols, 2)].every((q) => q === 0)).toBe(true);
        expect(dequantizeAffine(g)).toEqual(x);
      }
    }
  });

  it('give x̂ = x exactly with f16 storage when the value is an f16 value, else x̂ = f16(x)', () => {
    for (const v of [0, 0.5, -1024, 65504, 2 ** -24]) {
      const x = new Float32Array(4).fill(v);
      expect(dequantizeAffine(quantizeAffine(x, 1, 4, 'token', { bits: 4, group: 4 }))).toEqual(x);
    }
    const x = new Float32Array(4).fill(0.1);
    expect(dequantizeAffine(quantizeAffine(x, 1, 4, 'token', { bits: 4, group: 4 }))).toEqual(new Float32Array(4).fill(f16(Math.fround(0.1))));
  });
});

describe('refusals', () => {
  const o = { bits: 2 as const, group: 4 };
  it('refuses non-finite input, naming the function and the element', () => {
    const x = new Float32Array(8);
    x[6] = NaN;
    expect(() => quantizeAffine(x, 2, 4, 'token', o)).toThrow(CommvqError);
    expect(() => quantizeAffine(x, 2, 4, 'token', o)).toThrow(/^quantizeAffine: x\[1, 2\] is NaN$/);
    x[6] = -Infinity;
    expect(() => quantizeAffine(x, 4, 2, 'channel', { bits: 2, group: 2 })).toThrow(/quantizeAffine: x\[3, 0\] is -Infinity/);
  });

  it('refuses a group that does not divide its axis (no ragged last group)', () => {
    expect(() => quantizeAffine(new Float32Array(12), 2, 6, 'token', o)).toThrow(/^quantizeAffine: group 4 does not divide the 6 channels$/);
    expect(() => quantizeAffine(new Float32Array(10), 5, 2, 'channel', { bits: 2, group: 2 })).toThrow(/group 2 does not divide the 5 tokens/);
    expect(() => quantizeAffine(new Float32Array(8), 2, 4, 'token', { bits: 2, group: 0 })).toThrow(/group 0 is not a positive integer/);
  });

  it('refuses bit widths other than 1, 2, 4, 8 and a wrong length', () => {
    expect(() => quantizeAffine(new Float32Array(4), 1, 4, 'token', { bits: 3 as never, group: 4 })).toThrow(/bits 3 is not one of 1, 2, 4, 8/);
    expect(() => quantizeAffine(new Float32Array(5), 1, 4, 'token', o)).toThrow(/5 values for a \[1, 4\] matrix/);
  });

  it('refuses a scale or zero that overflows f16, which f32 storage holds', () => {
    const x = Float32Array.of(-60000, 60000);
    expect(() => quantizeAffine(x, 1, 2, 'token', { bits: 1, group: 2 })).toThrow(/quantizeAffine: scale 120000 overflows f16/);
    expect(() => quantizeAffine(Float32Array.of(7e4, 7e4), 1, 2, 'token', { bits: 1, group: 2 })).toThrow(/zero 70000 overflows f16/);
    expect(dequantizeAffine(quantizeAffine(x, 1, 2, 'token', { bits: 1, group: 2, stored: 'f32' }))).toEqual(x);
  });
});

describe('round trips within the bound', () => {
  /** Checks every element against the bound in the header; returns the largest error over s′/2 where s′ > 0. */
  function checkBound(x: Float32Array, rows: number, cols: number, axis: AffineAxis, bits: 1 | 2 | 4 | 8, group: number, stored: AffineStoredDType): number {
    const g = quantizeAffine(x, rows, cols, axis, { bits, group, stored });
    const xh = dequantizeAffine(g);
    const L = 2 ** bits - 1;
    const gCols = axis === 'token' ? cols / group : cols;
    let worst = 0;
    for (let j = 0; j < g.scales.length; j++) {
      const [gr, gc] = [Math.floor(j / gCols), j % gCols];
      const idx = Array.from({ length: group }, (_, k) => (axis === 'token' ? gr * cols + gc * group + k : (gr * group + k) * cols + gc));
      const vals = idx.map((i) => x[i]!);
      const [min, max] = [Math.min(...vals), Math.max(...vals)];
      const s = (max - min) / L;
      const [s1, z1] = [g.scales[j]!, g.zeros[j]!];
      const bound = Math.max(s1 / 2, L * Math.abs(s - s1) + Math.abs(min - z1)) + 2 ** -20 * Math.max(Math.abs(min), Math.abs(max));
      for (const i of idx) {
        const err = Math.abs(x[i]! - xh[i]!);
        if (!(err <= bound)) throw new Error(`${axis} b${bits} g${group} ${stored}: x[${i}] = ${x[i]} → ${xh[i]}, |err| ${err} > bound ${bound} (s′ ${s1}, z′ ${z1}, min ${min}, max ${max})`);
        if (s1 > 0) worst = Math.max(worst, err / (s1 / 2));
      }
    }
    return worst;
  }

  it('holds for every bit width, both axes, both stored dtypes, over magnitudes from f16 subnormal scales to 1e3', () => {
    const rng = new SeededRandom(18);
    for (const stored of ['f16', 'f32'] as AffineStoredDType[]) {
      for (const axis of ['token', 'channel'] as AffineAxis[]) {
        for (const bits of CODE_BITS) {
          for (const group of [32, 64]) {
            for (const magnitude of [1e-6, 1e-2, 1, 1e3]) {
              const [rows, cols] = axis === 'token' ? [3, 128] : [128, 3];
              const offset = magnitude * (rng.uniform() - 0.5) * 4;
              const x = Float32Array.from({ length: rows * cols }, () => offset + magnitude * rng.normal());
              const worst = checkBound(x, rows, cols, axis, bits, group, stored);
              if (stored === 'f32' && bits <= 4 && magnitude >= 1e-2) expect(worst, 'the bound is reached, not vacuous').toBeGreaterThan(0.8);
            }
          }
        }
      }
    }
  });

  it('holds for outliers: one channel 100x the rest, as keys have', () => {
    const rng = new SeededRandom(7);
    const x = Float32Array.from({ length: 64 * 32 }, (_, i) => (i % 32 === 5 ? 100 : 1) * rng.normal());
    for (const axis of ['token', 'channel'] as AffineAxis[]) for (const bits of [1, 2] as const) checkBound(x, 64, 32, axis, bits, 32, 'f16');
  });
});
