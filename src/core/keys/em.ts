import { SeededRandom } from '../model/seeded-random.js';
import { stopPoint } from '../stop-point.js';

/**
 * The EM trainer of spec §3.4–3.5, written once over an EmBackend that does the heavy work: the CPU (structured
 * E-step, the default; or the plain one kept as the test reference, em-plain.ts) or the GPU (gpu/gpu-em.ts).
 *
 * One stage (one group g, one residual r, data V = current residual, κ):
 *   init:  N_h² rows of V drawn uniformly with replacement (seeded) as centres; one E-step at τ = 1; one M-step.
 *   loop s = 0..S−1:  E-step at τ_s = τ_0·κ·(τ_1/τ_0)^{s/(S−1)}  →  hard_mse = mean_n,k (n_n·(V_n − C_{a_n}))²
 *     if hard_mse < best: best ← (hard_mse, θ that produced it); else if hard_mse − best < tol: stop
 *     M-step → θ
 * Residual loop: κ = 1; after stage r: if r mod 4 = 0 then κ ← κ/10; V ← V − C_r[argmin]; so κ(r) = 10^−⌈r/4⌉.
 */

export interface EmConfig {
  /** N_h (64: 12-bit codes) */
  readonly halfSize: number;
  /** S: most E-steps per stage (100) */
  readonly maxSteps: number;
  readonly initialTemp: number;
  readonly finalTemp: number;
  /** stop when hard_mse is no better than the best and within this of it (absolute, key units²) */
  readonly stopTolerance: number;
}

export const EM_DEFAULTS: EmConfig = { halfSize: 64, maxSteps: 100, initialTemp: 1e-3, finalTemp: 1e-5, stopTolerance: 1e-5 };

/** Where the E- and M-steps run; `T` is how a θ [2·N_h, P] is held (host array or device buffer). */
export interface EmBackend<T> {
  readonly tokens: number;
  readonly headDim: number;
  /** Init: centres = rows `indices` of V, one E-step at 1/invTau, one M-step. */
  init(indices: Int32Array, invTau: number): T;
  /** E-step against θ's centres at 1/invTau; returns Σ_n n_n²·min_c ‖V_n − C_c‖² and keeps the statistics. */
  eStep(theta: T, invTau: number): number;
  /** M-step from the last E-step's statistics. */
  mStep(): T;
  /** A copy of θ that later steps will not overwrite. */
  keep(theta: T): T;
  /** V ← V − C(θ)[argmin]; returns Σ_n n_n²·‖V_n‖² after the update. */
  residual(theta: T): number;
  read(theta: T): Float32Array;
}

export interface StageResult {
  /** θ [2·N_h, P] of the best E-step */
  readonly theta: Float32Array;
  /** best hard_mse (key units², mean over tokens and channels) */
  readonly mse: number;
  /** E-steps run */
  readonly steps: number;
  /** mean over tokens and channels of (n·V)² after subtracting this stage (the reference's printed error) */
  readonly error: number;
}

/** τ_s of the annealing schedule (spec §3.4). */
export function temperature(s: number, kappa: number, cfg: EmConfig): number {
  const f = cfg.maxSteps > 1 ? s / (cfg.maxSteps - 1) : 0;
  return cfg.initialTemp * kappa * (cfg.finalTemp / cfg.initialTemp) ** f;
}

/** κ of residual stage r: 10^−⌈r/4⌉, by repeated division as the reference's loop computes it. */
export function kappaOf(r: number): number {
  let kappa = 1;
  for (let i = 0; i < Math.ceil(r / 4); i++) kappa /= 10;
  return kappa;
}

/** N_h² row indices drawn uniformly with replacement from [0, N). */
export function drawInitRows(rng: SeededRandom, count: number, N: number): Int32Array {
  return Int32Array.from({ length: count }, () => Math.min(N - 1, Math.floor(rng.uniform() * N)));
}

/**
 * A seed for one (layer, group, stage) stream, mixed from the run's seed so that streams differ and a rerun with
 * the same seed draws the same rows.
 */
export function streamSeed(seed: number, layer: number, group: number, stage: number): number {
  let h = (seed >>> 0) ^ 0x9e3779b9;
  for (const v of [layer, group, stage]) {
    h = Math.imul(h ^ (v + 0x7f4a7c15), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/**
 * One EM stage on `be`'s current residual (spec §3.4). `onStep(s)` is called after each E-step. With a `signal`, the
 * event loop gets a turn after each E-step and an aborted signal throws `Interrupted` (stop-point.ts).
 *
 *   const { theta, mse } = await emStage(backend, 0.1, new SeededRandom(7), EM_DEFAULTS);
 */
export async function emStage<T>(
  be: EmBackend<T>, kappa: number, rng: SeededRandom, cfg: EmConfig, onStep?: (s: number) => void, signal?: AbortSignal,
): Promise<{ theta: T; mse: number; steps: number }> {
  let theta = be.init(drawInitRows(rng, cfg.halfSize * cfg.halfSize, be.tokens), 1);
  let best = Infinity;
  let bestTheta = theta;
  let steps = 0;
  const scale = 1 / (be.tokens * be.headDim);
  for (let s = 0; s < cfg.maxSteps; s++) {
    const mse = be.eStep(theta, 1 / temperature(s, kappa, cfg)) * scale;
    steps++;
    onStep?.(s);
    await stopPoint(signal);
    if (mse < best) {
      best = mse;
      bestTheta = be.keep(theta);
    } else if (mse - best < cfg.stopTolerance) {
      break;
    }
    if (s + 1 < cfg.maxSteps) theta = be.mStep();
  }
  return { theta: bestTheta, mse: best, steps };
}

/**
 * The residual loop of one group (spec §3.5): R stages, κ schedule, residual update with each stage's best θ.
 * `rngOf(r)` gives stage r's seeded stream; `onStep(r, s)` reports progress; `signal` as for emStage.
 *
 *   const stages = await trainGroupEm(new CpuEmBackend(V, n2, 64), 11, (r) => new SeededRandom(streamSeed(1, 0, g, r)));
 */
export async function trainGroupEm<T>(
  be: EmBackend<T>,
  residuals: number,
  rngOf: (r: number) => SeededRandom,
  cfg: EmConfig = EM_DEFAULTS,
  onStep?: (r: number, s: number) => void,
  signal?: AbortSignal,
): Promise<StageResult[]> {
  const out: StageResult[] = [];
  const scale = 1 / (be.tokens * be.headDim);
  for (let r = 0; r < residuals; r++) {
    const stage = await emStage(be, kappaOf(r), rngOf(r), cfg, (s) => onStep?.(r, s), signal);
    const error = be.residual(stage.theta) * scale;
    out.push({ theta: be.read(stage.theta), mse: stage.mse, steps: stage.steps, error });
  }
  return out;
}
