/**
 * The key-codebook kernels (kernels/key_*.cu) against the CPU reference (src/core/keys), on key-like random data,
 * head_dim 64 and 128: data preparation, the init step's dense distances, the structured soft E-step statistics, the
 * f64 Hermitian M-step, the hard assignment (the GPU encoder), and whole EM stages; then no device memory left held.
 * Tolerances are written next to each check: the GPU computes in f32 (exp by __expf) where the CPU uses f64.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { CommvqError } from '../../src/core/errors.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { CpuEmBackend } from '../../src/core/keys/cpu-em.js';
import { drawInitRows, EM_DEFAULTS, streamSeed, trainGroupEm } from '../../src/core/keys/em.js';
import { encodeKeys, stageErrors } from '../../src/core/keys/encoder.js';
import { eStepDense, eStepStructured } from '../../src/core/keys/estep.js';
import { stageTables, subtractCentre } from '../../src/core/keys/distance.js';
import { gpuStageErrors } from '../../src/core/keys/gpu/gpu-encode.js';
import { GpuEmBackend, GpuKeys } from '../../src/core/keys/gpu/gpu-em.js';
import { prepareKeys } from '../../src/core/keys/layout.js';
import { solveTheta, type EStats } from '../../src/core/keys/mstep.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { keyLikeRows } from '../keys/helpers.js';
import { checkClose, nonFinite, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

/** max |a − b| ≤ atol + rtol·max|b| over the whole array, with the usual failure message. */
function closeToScale(what: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol = 0): string | null {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(want[i]!));
  return checkClose(what, got, want, () => atol + rtol * m);
}

/** ‖v − C[code]‖² of one PI row to one centre of a stage (halfSize 64). */
function distanceTo(theta: Float32Array, D: number, code: number, v: Float32Array): number {
  const rest = v.slice();
  subtractCentre(theta, 64, D / 2, code, rest, 0);
  return rest.reduce((s, x) => s + x * x, 0);
}

/** GPU statistics (w, S, hard) as CPU EStats, to run the CPU solve on them. */
function asStats(flat: Float32Array, D: number): EStats {
  return { halfSize: 64, headDim: D, w: Float64Array.from(flat.subarray(0, 4096)), s: Float64Array.from(flat.subarray(4096, 4096 + 128 * D)), hardSum: flat[4096 + 128 * D]! };
}

describe.skipIf(!gpu)(`key codebook kernels vs CPU (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let cuda: CudaBackend;
  const ok = (msg: string | null): void => expect(msg, msg ?? '').toBeNull();

  beforeAll(() => {
    cuda = CudaBackend.create(0);
  });
  afterAll(() => cuda?.dispose());

  for (const D of [64, 128]) {
    const G = D === 64 ? 3 : 2;
    const N = 3000;
    const rows = keyLikeRows(SEED % 1000, N, G * D);
    const cpuKeys = prepareKeys(rows, G, D);
    const n2 = cpuKeys.norms.map((n) => n * n);

    it(`D_h ${D}: prepares keys as the CPU does (norm over all heads, PI layout), refuses NaN`, () => {
      const keys = GpuKeys.upload(cuda.ctx, rows, G, D);
      try {
        const v = cuda.toFloat32(keys.v); // [G, N, D]
        const got2 = cuda.toFloat32(keys.n2);
        for (let g = 0; g < G; g++) ok(closeToScale(`V group ${g}`, v.subarray(g * N * D, (g + 1) * N * D), cpuKeys.data[g]!, 1e-6)); // f32 rounding of x/‖x‖
        ok(checkClose('n2', got2, n2, (i) => 1e-5 * n2[i]!));
      } finally {
        keys.dispose();
      }
      const bad = rows.slice();
      bad[7 * G * D + 3] = Number.POSITIVE_INFINITY;
      expect(() => GpuKeys.upload(cuda.ctx, bad, G, D, 'layer 2 keys')).toThrow(CommvqError);
    });

    it(`D_h ${D}: init step (dense distances, τ = 1) and structured E-steps give the CPU statistics and θ`, () => {
      const keys = GpuKeys.upload(cuda.ctx, rows, G, D);
      const be = new GpuEmBackend(cuda.ctx, keys.group(0), keys.n2, D);
      try {
        const V = cpuKeys.data[0]!;
        const idx = drawInitRows(new SeededRandom(SEED), 4096, N);
        const theta0 = be.init(idx, 1);
        const centres = new Float32Array(4096 * D);
        idx.forEach((row, c) => centres.set(V.subarray(row * D, row * D + D), c * D));
        const cpuInit = eStepDense(V, n2, centres, 64, 1);
        const gInit = be.readStats();
        ok(closeToScale('init w', gInit.subarray(0, 4096), cpuInit.w, 1e-4)); // f32 sums of 3000 near-uniform weights
        ok(closeToScale('init S', gInit.subarray(4096, 4096 + 128 * D), cpuInit.s, 1e-4));
        const thetaCpu = solveTheta(cpuInit);
        ok(closeToScale('init θ', be.read(theta0), thetaCpu, 1e-3)); // the 64×64 solve amplifies the 1e-5 in the stats
        // the f64 solve itself: GPU solve of GPU stats = CPU solve of the same stats
        ok(closeToScale('solve', be.read(theta0), solveTheta(asStats(gInit, D)), 1e-5));

        for (const tau of [1e-2, 1e-3]) {
          const hard = be.eStep(theta0, 1 / tau);
          const cpu = eStepStructured(V, n2, stageTables(be.read(theta0), 64, D / 2), 1 / tau);
          const g = be.readStats();
          expect(nonFinite(g), `NaN in stats at τ ${tau}`).toEqual([]);
          expect(Math.abs(hard - cpu.hardSum) / cpu.hardSum, `hard at τ ${tau}`).toBeLessThan(1e-4);
          ok(closeToScale(`w at τ ${tau}`, g.subarray(0, 4096), cpu.w, 2e-3)); // near-ties: f32 distances move weights by ~(Δd/τ)
          ok(closeToScale(`S at τ ${tau}`, g.subarray(4096, 4096 + 128 * D), cpu.s, 2e-3));
          const next = be.mStep();
          ok(closeToScale(`θ at τ ${tau}`, be.read(next), solveTheta(asStats(g, D)), 1e-4)); // same f32 stats, both solved in f64
        }
      } finally {
        be.dispose();
        keys.dispose();
      }
    });

    it(`D_h ${D}: the GPU encoder matches the CPU encoder (codes and per-stage errors)`, async () => {
      // an EM-trained 2-stage codebook (trained on the GPU: quicker), so that codes are meaningful and ties rare
      const cb = new LayerKeyCodebook({ residuals: 2, groups: G, halfSize: 64, pairs: D / 2 });
      const keys = GpuKeys.upload(cuda.ctx, rows, G, D);
      try {
        for (let g = 0; g < G; g++) {
          const be = new GpuEmBackend(cuda.ctx, keys.group(g), keys.n2, D);
          const stages = await trainGroupEm(be, 2, (r) => new SeededRandom(streamSeed(1, 0, g, r)), { ...EM_DEFAULTS, maxSteps: 4 });
          be.dispose();
          stages.forEach((s, r) => cb.stage(r, g).set(s.theta));
        }
      } finally {
        keys.dispose();
      }
      const held = keyLikeRows(SEED % 1000 + 1, 2000, G * D);
      const codes = new Int32Array(2 * G * 2000);
      const gpuErr = gpuStageErrors(cuda.ctx, cb, held, codes);
      const cpuErr = stageErrors(cb, held);
      ok(checkClose('power', gpuErr.power, cpuErr.power, (i) => 1e-5 * cpuErr.power[i]!));
      ok(checkClose('stage errors', gpuErr.error, cpuErr.error, (i) => 1e-3 * cpuErr.error[i]!)); // a near-tie may pick the other centre
      // every GPU code is a nearest centre up to f32 rounding: where it differs from the CPU's (f64 distances, first
      // index on ties) the two centres are a near-tie. A near-tie changes the residual, so that row's later stages
      // are not compared. (Random seeds give a trained codebook with some near-duplicate centres: up to ~1% differ.)
      const cpuCodes = encodeKeys(cb, held).codes;
      const V = prepareKeys(held, G, D);
      let compared = 0;
      let differ = 0;
      for (let g = 0; g < G; g++) {
        for (let t = 0; t < 2000; t++) {
          const v = V.data[g]!.slice(t * D, (t + 1) * D); // normalised PI row: ‖v‖ ≤ 1
          for (let r = 0; r < 2; r++) {
            const i = (r * G + g) * 2000 + t;
            compared++;
            if (codes[i] !== cpuCodes[i]) {
              differ++;
              const excess = distanceTo(cb.stage(r, g), D, codes[i]!, v) - distanceTo(cb.stage(r, g), D, cpuCodes[i]!, v);
              expect(excess, `token ${t} head ${g} stage ${r}: GPU centre ${codes[i]} is farther than ${cpuCodes[i]}`).toBeLessThanOrEqual(2e-5);
              break;
            }
            subtractCentre(cb.stage(r, g), 64, D / 2, codes[i]!, v, 0);
          }
        }
      }
      expect(differ / compared).toBeLessThan(0.02);
    });

    it(`D_h ${D}: whole EM stages on the GPU follow the CPU (same init draws, steps, errors)`, async () => {
      const keys = GpuKeys.upload(cuda.ctx, rows, G, D);
      const be = new GpuEmBackend(cuda.ctx, keys.group(1), keys.n2, D);
      try {
        const cfg = { ...EM_DEFAULTS, maxSteps: 6 };
        const rngOf = (r: number) => new SeededRandom(streamSeed(4, 0, 1, r));
        const g = await trainGroupEm(be, 2, rngOf, cfg);
        const c = await trainGroupEm(new CpuEmBackend(cpuKeys.data[1]!.slice(), n2, 64), 2, rngOf, cfg);
        for (let r = 0; r < 2; r++) {
          expect(Math.abs(g[r]!.mse - c[r]!.mse) / c[r]!.mse, `stage ${r} mse`).toBeLessThan(1e-2);
          expect(Math.abs(g[r]!.error - c[r]!.error) / c[r]!.error, `stage ${r} error`).toBeLessThan(1e-2);
        }
        expect(g[1]!.error).toBeLessThan(g[0]!.error);
      } finally {
        be.dispose();
        keys.dispose();
      }
    });
  }

  it('leaves no device memory held', async () => {
    const before = cuda.memory().bytesInUse;
    const rows = keyLikeRows(1, 4096, 128);
    const keys = GpuKeys.upload(cuda.ctx, rows, 1, 128);
    const be = new GpuEmBackend(cuda.ctx, keys.group(0), keys.n2, 128);
    await trainGroupEm(be, 1, (r) => new SeededRandom(r), { ...EM_DEFAULTS, maxSteps: 2 });
    be.dispose();
    keys.dispose();
    gpuStageErrors(cuda.ctx, new LayerKeyCodebook({ residuals: 1, groups: 1, halfSize: 64, pairs: 64 }), rows);
    expect(cuda.memory().bytesInUse).toBe(before);
  });
});
