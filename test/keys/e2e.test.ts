/**
 * E2E refinement: the hand-derived backward against finite differences, and the trainer against its promises
 * (deterministic for a seed, never worse than its init on the scored subset, better than EM on key-like data).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { CpuEmBackend } from '../../src/core/keys/cpu-em.js';
import { e2eData, e2eLoss, E2E_DEFAULTS, e2eSchedule, trainE2e } from '../../src/core/keys/e2e.js';
import { EM_DEFAULTS, streamSeed, trainGroupEm } from '../../src/core/keys/em.js';
import { stageErrors } from '../../src/core/keys/encoder.js';
import { prepareKeys } from '../../src/core/keys/layout.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { keyLikeRows } from './helpers.js';

/** An EM codebook (N_h 8, D_h 16, G 2) for key-like rows. */
async function emCodebook(rows: Float32Array, R: number): Promise<LayerKeyCodebook> {
  const keys = prepareKeys(rows, 2, 16);
  const n2 = keys.norms.map((n) => n * n);
  const cb = new LayerKeyCodebook({ residuals: R, groups: 2, halfSize: 8, pairs: 8 });
  for (let g = 0; g < 2; g++) {
    const stages = await trainGroupEm(new CpuEmBackend(keys.data[g]!.slice(), n2, 8), R, (r) => new SeededRandom(streamSeed(3, 0, g, r)), { ...EM_DEFAULTS, halfSize: 8, maxSteps: 15 });
    stages.forEach((s, r) => cb.stage(r, g).set(s.theta));
  }
  return cb;
}

describe('E2E backward', () => {
  const rows = keyLikeRows(8, 300, 32);
  const data = e2eData(prepareKeys(rows, 2, 16));
  let cb!: LayerKeyCodebook;
  beforeAll(async () => {
    cb = await emCodebook(rows, 3);
  });
  const idx = Int32Array.from({ length: 64 }, (_, i) => 3 * i);

  it('equals central finite differences of the fixed-code loss, and of the true loss where no code moves', () => {
    const grad = new Float64Array(cb.theta.length);
    const codes = new Int32Array(2 * 3 * idx.length);
    const loss = e2eLoss(cb, data, idx, { grad, codesOut: codes });
    expect(loss).toBeGreaterThan(0);
    const rng = new SeededRandom(1);
    let checked = 0;
    let trueChecked = 0;
    for (let trial = 0; trial < 60; trial++) {
      const i = Math.floor(rng.uniform() * cb.theta.length);
      if (grad[i] === 0) continue; // an unused codeword
      const h = 1e-3 * (Math.abs(cb.theta[i]!) + 1e-3);
      const at = (delta: number, fixed: boolean) => {
        const theta = new Float32Array(cb.theta);
        theta[i] = cb.theta[i]! + delta;
        const shifted = new LayerKeyCodebook(cb.shape, theta);
        const used = new Int32Array(codes.length);
        const value = e2eLoss(shifted, data, idx, fixed ? { codes } : { codesOut: used });
        return { value, same: fixed || used.every((x, k) => x === codes[k]) };
      };
      const plus = at(h, true), minus = at(-h, true);
      const h32 = (Math.fround(cb.theta[i]! + h) - Math.fround(cb.theta[i]! - h)) / 2; // the step f32 really took
      const fd = (plus.value - minus.value) / (2 * h32);
      expect(Math.abs(fd - grad[i]!), `θ[${i}]: fd ${fd}, grad ${grad[i]}`).toBeLessThan(2e-3 * Math.abs(grad[i]!) + 1e-7);
      checked++;
      const tp = at(h, false), tm = at(-h, false);
      if (tp.same && tm.same) {
        expect(Math.abs((tp.value - tm.value) / (2 * h32) - grad[i]!)).toBeLessThan(2e-3 * Math.abs(grad[i]!) + 1e-7);
        trueChecked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(trueChecked).toBeGreaterThan(10);
  });
});

describe('E2E training', () => {
  it('has a warm-up and a cosine decay', () => {
    const cfg = { ...E2E_DEFAULTS, warmup: 0.1, finalLr: 0.05 };
    expect(e2eSchedule(0, 100, cfg)).toBeCloseTo(0.1);
    expect(e2eSchedule(9, 100, cfg)).toBeCloseTo(1);
    expect(e2eSchedule(99, 100, cfg)).toBeCloseTo(0.05, 2);
  });

  it('is deterministic for a seed, never ends worse than its init, and beats greedy EM on held-out key-like data', async () => {
    const rows = keyLikeRows(9, 2600, 32);
    const train = rows.subarray(0, 2000 * 32);
    const held = rows.subarray(2000 * 32);
    const R = 4;
    const cb = await emCodebook(train, R);
    const data = e2eData(prepareKeys(train, 2, 16));
    const cfg = { ...E2E_DEFAULTS, epochs: 8, batchSize: 128, lr: 3e-2, validTokens: 1000, seed: 5 };
    const a = await trainE2e(data, cb, cfg);
    const b = await trainE2e(data, cb, cfg);
    expect(Array.from(a.codebook.theta)).toEqual(Array.from(b.codebook.theta));
    expect(Math.min(...a.validLoss)).toBe(a.validLoss[a.bestEpoch]);
    expect(a.validLoss[a.bestEpoch]!).toBeLessThanOrEqual(a.validLoss[0]!);
    const rel = (c: LayerKeyCodebook) => {
      const e = stageErrors(c, held);
      return (e.error[(R - 1) * 2]! + e.error[(R - 1) * 2 + 1]!) / (e.power[0]! + e.power[1]!);
    };
    const ratio = rel(a.codebook) / rel(cb);
    console.log(`E2E/EM held-out relative error: ${ratio.toFixed(3)}`);
    expect(ratio, `E2E/EM held-out ${ratio}`).toBeLessThan(0.97);
    expect(Array.from((await trainE2e(data, cb, { ...cfg, seed: 6 })).codebook.theta)).not.toEqual(Array.from(a.codebook.theta));
  });
});
