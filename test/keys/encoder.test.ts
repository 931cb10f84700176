/**
 * The shared key encoder and decoder: layouts (spec §0.2), the per-token norm over all channels (§3.2), greedy
 * residual nearest neighbour against a brute-force search over explicit centres (§6.4), decode(encode(k)).
 */
import { describe, expect, it } from 'vitest';
import { centresFromTheta, LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { decodeKeys, encodeKeys, stageErrors } from '../../src/core/keys/encoder.js';
import { hfToPi, piToHf, prepareKeys } from '../../src/core/keys/layout.js';
import { CommvqError } from '../../src/core/errors.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { keyLikeRows, randomArray } from './helpers.js';

describe('layouts', () => {
  it('PI[2j + t] = HF[t·P + j] within each head, and back', () => {
    for (const D of [64, 128]) {
      const hf = Float32Array.from({ length: D }, (_, c) => c);
      const pi = hfToPi(hf, D);
      for (let j = 0; j < D / 2; j++) {
        expect(pi[2 * j]).toBe(j);
        expect(pi[2 * j + 1]).toBe(D / 2 + j);
      }
      expect(Array.from(piToHf(pi, D))).toEqual(Array.from(hf));
    }
  });

  it('normalises each token by its norm over all heads, then splits heads in PI layout', () => {
    const G = 3, D = 64, N = 5;
    const rows = keyLikeRows(2, N, G * D);
    const keys = prepareKeys(rows, G, D);
    for (let t = 0; t < N; t++) {
      let total = 0;
      for (let g = 0; g < G; g++) for (let k = 0; k < D; k++) total += keys.data[g]![t * D + k]! ** 2;
      expect(total).toBeCloseTo(1, 5);
      const head1 = hfToPi(rows.subarray(t * G * D + D, t * G * D + 2 * D), D);
      for (let k = 0; k < D; k++) expect(keys.data[1]![t * D + k]).toBeCloseTo(head1[k]! / keys.norms[t]!, 6);
    }
  });

  it('refuses NaN and infinite values, naming the token', () => {
    const rows = keyLikeRows(3, 4, 64);
    rows[2 * 64 + 5] = NaN;
    expect(() => prepareKeys(rows, 1, 64, 'layer 7')).toThrow(CommvqError);
    expect(() => prepareKeys(rows, 1, 64, 'layer 7')).toThrow(/layer 7: token 2 holds NaN/);
  });
});

describe('encoder', () => {
  const shape = { residuals: 3, groups: 2, halfSize: 8, pairs: 16 };
  const D = 32;
  const rng = new SeededRandom(4);
  // stage r codewords of scale 0.1/2^r: a residual-looking codebook
  const theta = new Float32Array(3 * 2 * 16 * 16);
  for (let s = 0; s < 6; s++) theta.set(randomArray(rng, 256, 0.1 / 2 ** Math.floor(s / 2)), s * 256);
  const cb = new LayerKeyCodebook(shape, theta);
  const N = 40;
  const rows = keyLikeRows(5, N, 2 * D);

  it('greedy residual encoding picks, stage by stage, the nearest explicit centre', () => {
    const enc = encodeKeys(cb, rows);
    const keys = prepareKeys(rows, 2, D);
    for (let g = 0; g < 2; g++) {
      for (let t = 0; t < N; t++) {
        const v = keys.data[g]!.slice(t * D, t * D + D);
        for (let r = 0; r < 3; r++) {
          const centres = centresFromTheta(cb.stage(r, g), 8, 16);
          let best = 0;
          let bestD = Infinity;
          for (let c = 0; c < 64; c++) {
            let s = 0;
            for (let k = 0; k < D; k++) s += (v[k]! - centres[c * D + k]!) ** 2;
            if (s < bestD) [best, bestD] = [c, s];
          }
          expect(enc.codes[(r * 2 + g) * N + t], `g ${g} t ${t} r ${r}`).toBe(best);
          for (let k = 0; k < D; k++) v[k] -= centres[best * D + k]!;
        }
      }
    }
  });

  it('decode(encode(k)) has the error stageErrors reports, and more stages never hurt on average', () => {
    const enc = encodeKeys(cb, rows);
    const approx = decodeKeys(cb, enc);
    let err = 0;
    let power = 0;
    for (let i = 0; i < rows.length; i++) {
      err += (rows[i]! - approx[i]!) ** 2;
      power += rows[i]! ** 2;
    }
    const e = stageErrors(cb, rows);
    const total = (r: number) => e.error[r * 2]! + e.error[r * 2 + 1]!;
    expect(e.power[0]! + e.power[1]!).toBeCloseTo(power, 1);
    expect(total(2) / power).toBeCloseTo(err / power, 5);
    expect(total(1)).toBeLessThan(total(0));
    expect(total(2)).toBeLessThan(total(1));
    // a truncated codebook decodes the first stages of the same codes
    expect(stageErrors(cb.truncate(2), rows).error[2]).toBeCloseTo(e.error[2]!, 6);
  });
});
