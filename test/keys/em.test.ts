/**
 * The key-codebook EM against its definitions (spec §3.3–3.5, Appendix A): centres against the T matrix, the
 * structured distance, E-step and M-step against the plain ones, the M-step against a generic least-squares solve,
 * whole EM stages structured = plain, error falling over residual stages, determinism for a seed.
 */
import { describe, expect, it } from 'vitest';
import { centresFromTheta } from '../../src/core/keys/codebook.js';
import { CpuEmBackend } from '../../src/core/keys/cpu-em.js';
import { stageTables, structuredSqDistances, tokenScratch } from '../../src/core/keys/distance.js';
import { EM_DEFAULTS, emStage, kappaOf, streamSeed, temperature, trainGroupEm, type EmConfig } from '../../src/core/keys/em.js';
import { PlainEmBackend, plainAssign, plainMStep, solveLinear, tMatrix } from '../../src/core/keys/em-plain.js';
import { eStepStructured } from '../../src/core/keys/estep.js';
import { prepareKeys } from '../../src/core/keys/layout.js';
import { solveTheta } from '../../src/core/keys/mstep.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { keyLikeRows, randomArray, relDiff } from './helpers.js';

/** Normalised group-0 data and squared norms of key-like rows. */
function groupData(seed: number, N: number, headDim: number, groups = 2): { V: Float32Array; n2: Float32Array } {
  const keys = prepareKeys(keyLikeRows(seed, N, groups * headDim), groups, headDim);
  return { V: keys.data[0]!, n2: keys.norms.map((n) => n * n) };
}

describe('codebook parametrisation', () => {
  it('centres (X_A − Y_B, Y_A + X_B) equal Tθ reshaped, and TᵀT = 2·N_h·I', () => {
    for (const [nh, pairs] of [[64, 4], [8, 32], [4, 64]] as const) {
      const rng = new SeededRandom(nh * 100 + pairs);
      const theta = randomArray(rng, 2 * nh * pairs);
      const T = tMatrix(nh);
      const K = nh * nh;
      const cols = 2 * nh;
      const centres = centresFromTheta(theta, nh, pairs);
      let worst = 0;
      for (let c = 0; c < K; c++) {
        for (let t = 0; t < 2; t++) {
          for (let j = 0; j < pairs; j++) {
            let s = 0;
            for (let p = 0; p < cols; p++) s += T[(2 * c + t) * cols + p]! * theta[p * pairs + j]!;
            worst = Math.max(worst, Math.abs(s - centres[c * 2 * pairs + 2 * j + t]!));
          }
        }
      }
      expect(worst, `N_h ${nh}, P ${pairs}`).toBeLessThan(1e-6);
      if (nh <= 8) {
        for (let p = 0; p < cols; p++) {
          for (let q = 0; q < cols; q++) {
            let s = 0;
            for (let r = 0; r < 2 * K; r++) s += T[r * cols + p]! * T[r * cols + q]!;
            expect(s).toBe(p === q ? 2 * nh : 0);
          }
        }
      }
    }
  });

  it('the structured distance equals ‖v − C_c‖² computed directly', () => {
    const rng = new SeededRandom(3);
    for (const [nh, pairs] of [[8, 32], [64, 64]] as const) {
      const theta = randomArray(rng, 2 * nh * pairs, 0.1);
      const tables = stageTables(theta, nh, pairs);
      const centres = centresFromTheta(theta, nh, pairs);
      const v = randomArray(rng, 2 * pairs, 0.2);
      const d2 = new Float64Array(nh * nh);
      const best = structuredSqDistances(tables, v, 0, d2, tokenScratch(nh));
      let worst = 0;
      let bestDirect = 0;
      for (let c = 0; c < nh * nh; c++) {
        let s = 0;
        for (let k = 0; k < 2 * pairs; k++) s += (v[k]! - centres[c * 2 * pairs + k]!) ** 2;
        worst = Math.max(worst, Math.abs(s - d2[c]!) / s);
        if (s < d2[bestDirect]!) bestDirect = c;
      }
      expect(worst).toBeLessThan(1e-5);
      expect(best).toBe(bestDirect);
    }
  });
});

describe('E-step and M-step', () => {
  const cases = [
    { nh: 4, headDim: 6, N: 80, tau: 1 },
    { nh: 8, headDim: 16, N: 200, tau: 1e-2 },
    { nh: 8, headDim: 64, N: 150, tau: 1e-3 },
  ];

  it('structured E-step statistics + Hermitian solve give the plain θ = (TᵀWT)⁻¹TᵀW·M̃', () => {
    for (const { nh, headDim, N, tau } of cases) {
      const { V, n2 } = groupData(nh + N, N, headDim);
      const theta = randomArray(new SeededRandom(N), nh * headDim, 0.05);
      const st = eStepStructured(V, n2, stageTables(theta, nh, headDim / 2), 1 / tau);
      const plain = plainAssign(V, n2, centresFromTheta(theta, nh, headDim / 2), nh * nh, 1 / tau);
      expect(Math.abs(st.hardSum - plain.hardSum) / plain.hardSum).toBeLessThan(1e-5);
      const want = plainMStep(V, plain.P, nh);
      expect(relDiff(solveTheta(st), want), `N_h ${nh}, D_h ${headDim}, τ ${tau}`).toBeLessThan(1e-5);
    }
  });

  it('the M-step is the generic weighted least-squares solution of Σ_n Σ_c P[n,c]·‖V_n − C_c(θ)‖² (Appendix A)', () => {
    for (const { nh, headDim, N, tau } of cases.slice(0, 2)) {
      const pairs = headDim / 2;
      const { V, n2 } = groupData(7 + nh, N, headDim);
      const theta0 = randomArray(new SeededRandom(5), nh * headDim, 0.05);
      const { P } = plainAssign(V, n2, centresFromTheta(theta0, nh, pairs), nh * nh, 1 / tau);
      // unknowns u = θ flattened [2N_h, P]; C_c[2j] = u[2A, j] − u[2B+1, j], C_c[2j+1] = u[2A+1, j] + u[2B, j]
      const n = 2 * nh * pairs;
      const lhs = new Float64Array(n * n);
      const rhs = new Float64Array(n);
      const K = nh * nh;
      for (let t = 0; t < N; t++) {
        for (let c = 0; c < K; c++) {
          const p = P[t * K + c]!;
          const A = Math.floor(c / nh), B = c % nh;
          for (let k = 0; k < headDim; k++) {
            const j = k >> 1;
            const terms: [number, number][] =
              k % 2 === 0 ? [[2 * A * pairs + j, 1], [(2 * B + 1) * pairs + j, -1]] : [[(2 * A + 1) * pairs + j, 1], [2 * B * pairs + j, 1]];
            for (const [i1, a1] of terms) {
              rhs[i1] += p * a1 * V[t * headDim + k]!;
              for (const [i2, a2] of terms) lhs[i1 * n + i2] += p * a1 * a2;
            }
          }
        }
      }
      const generic = solveLinear(lhs, rhs, n, 1);
      const st = eStepStructured(V, n2, stageTables(theta0, nh, pairs), 1 / tau);
      expect(relDiff(solveTheta(st), generic)).toBeLessThan(1e-5);
    }
  });
});

describe('EM', () => {
  const small: EmConfig = { ...EM_DEFAULTS, halfSize: 4, maxSteps: 12 };

  it('follows the schedules of §3.4–3.5', () => {
    expect(temperature(0, 1, EM_DEFAULTS)).toBeCloseTo(1e-3, 15);
    expect(temperature(99, 0.1, EM_DEFAULTS)).toBeCloseTo(1e-6, 15);
    const kappas = [0, 1, 4, 5, 8, 9, 20].map(kappaOf);
    [1, 0.1, 0.1, 0.01, 0.01, 1e-3, 1e-5].forEach((k, i) => expect(kappas[i]).toBeCloseTo(k, 18));
  });

  it('a structured EM stage equals the plain one (same seed: same θ, steps and hard_mse)', async () => {
    const { V, n2 } = groupData(11, 120, 8);
    const a = await emStage(new CpuEmBackend(V.slice(), n2, 4), 1, new SeededRandom(9), small);
    const b = await emStage(new PlainEmBackend(V.slice(), n2, 4), 1, new SeededRandom(9), small);
    expect(a.steps).toBe(b.steps);
    expect(Math.abs(a.mse - b.mse) / b.mse).toBeLessThan(1e-6);
    expect(relDiff(a.theta, b.theta)).toBeLessThan(1e-4);
  });

  it('reduces the error at every residual stage, and is deterministic for a seed', async () => {
    const { V, n2 } = groupData(21, 400, 16);
    const run = (seed: number) =>
      trainGroupEm(new CpuEmBackend(V.slice(), n2, 8), 5, (r) => new SeededRandom(streamSeed(seed, 0, 0, r)), { ...small, halfSize: 8 });
    const stages = await run(1);
    let before = 0;
    for (let t = 0; t < 400; t++) for (let k = 0; k < 16; k++) before += n2[t]! * V[t * 16 + k]! ** 2;
    before /= 400 * 16;
    const errors = [before, ...stages.map((s) => s.error)];
    for (let r = 1; r < errors.length; r++) expect(errors[r], `stage ${r - 1}: ${errors.join(', ')}`).toBeLessThan(errors[r - 1]!);
    expect(errors.at(-1)! / before).toBeLessThan(0.3);
    const again = await run(1);
    expect(again.map((s) => Array.from(s.theta))).toEqual(stages.map((s) => Array.from(s.theta)));
    expect(Array.from((await run(2))[0]!.theta)).not.toEqual(Array.from(stages[0]!.theta));
  });
});
