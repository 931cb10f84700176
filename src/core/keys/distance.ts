/**
 * The structured distance to the N_h² centres of one stage (spec §3.3), without building them:
 *
 *   ‖v − C_{A,B}‖² = ‖v‖² + α_A(v) + β_B(v) + Q[A,B]
 *   α_A = |z_A|² − 2·Σ_j Re(conj(z_{A,j})·v_j),   β_B = |z_B|² − 2·Σ_j Im(conj(z_{B,j})·v_j),
 *   Q[A,B] = 2·Σ_j (Y_{A,j}·X_{B,j} − X_{A,j}·Y_{B,j})   (data-independent, N_h × N_h)
 *
 * with v_j = v[2j] + i·v[2j+1] (PI layout). Per token this costs 2·N_h dot products of length D_h (instead of N_h²)
 * plus N_h² additions. CPU code computes in f64 (the numerical reference); θ and data stay f32.
 */

export interface StageTables {
  readonly halfSize: number;
  readonly pairs: number;
  /** θ [2·N_h, P] of the stage */
  readonly theta: Float32Array;
  /** |z_i|² = Σ_j X_{i,j}² + Y_{i,j}², [N_h] */
  readonly nz: Float64Array;
  /** Q[A·N_h + B] = 2·Σ_j (Y_A X_B − X_A Y_B), [N_h²] */
  readonly q: Float64Array;
}

/** The data-independent tables of one stage's θ [2·N_h, P]. */
export function stageTables(theta: Float32Array, halfSize: number, pairs: number): StageTables {
  const nz = new Float64Array(halfSize);
  const q = new Float64Array(halfSize * halfSize);
  for (let i = 0; i < halfSize; i++) {
    const x = 2 * i * pairs;
    let s = 0;
    for (let j = 0; j < pairs; j++) s += theta[x + j]! * theta[x + j]! + theta[x + pairs + j]! * theta[x + pairs + j]!;
    nz[i] = s;
  }
  for (let A = 0; A < halfSize; A++) {
    const xA = 2 * A * pairs;
    const yA = xA + pairs;
    for (let B = 0; B < halfSize; B++) {
      const xB = 2 * B * pairs;
      const yB = xB + pairs;
      let s = 0;
      for (let j = 0; j < pairs; j++) s += theta[yA + j]! * theta[xB + j]! - theta[xA + j]! * theta[yB + j]!;
      q[A * halfSize + B] = 2 * s;
    }
  }
  return { halfSize, pairs, theta, nz, q };
}

/** Scratch arrays for one token's α and β. */
export function tokenScratch(halfSize: number): { alpha: Float64Array; beta: Float64Array } {
  return { alpha: new Float64Array(halfSize), beta: new Float64Array(halfSize) };
}

/**
 * α (with ‖v‖² folded in) and β of the token v = x[off .. off + D_h) (PI layout) into `alpha`, `beta` [N_h].
 * Returns ‖v‖².
 */
export function tokenTerms(t: StageTables, x: Float32Array, off: number, alpha: Float64Array, beta: Float64Array): number {
  const { halfSize, pairs, theta, nz } = t;
  let vv = 0;
  for (let k = 0; k < 2 * pairs; k++) vv += x[off + k]! * x[off + k]!;
  for (let i = 0; i < halfSize; i++) {
    const xi = 2 * i * pairs;
    const yi = xi + pairs;
    let re = 0;
    let im = 0;
    for (let j = 0; j < pairs; j++) {
      const v0 = x[off + 2 * j]!;
      const v1 = x[off + 2 * j + 1]!;
      const X = theta[xi + j]!;
      const Y = theta[yi + j]!;
      re += v0 * X + v1 * Y;
      im += v1 * X - v0 * Y;
    }
    alpha[i] = vv + nz[i]! - 2 * re;
    beta[i] = nz[i]! - 2 * im;
  }
  return vv;
}

/**
 * Squared distances of token x[off..] to all N_h² centres into `out` [N_h²] (clamped at 0); returns the index of
 * the smallest (first on ties, as torch.argmin).
 */
export function structuredSqDistances(
  t: StageTables,
  x: Float32Array,
  off: number,
  out: Float64Array,
  scratch: { alpha: Float64Array; beta: Float64Array },
): number {
  const { alpha, beta } = scratch;
  tokenTerms(t, x, off, alpha, beta);
  const n = t.halfSize;
  const q = t.q;
  let best = 0;
  let bestD = Infinity;
  for (let A = 0; A < n; A++) {
    const a = alpha[A]!;
    const row = A * n;
    for (let B = 0; B < n; B++) {
      let d = a + beta[B]! + q[row + B]!;
      if (d < 0) d = 0;
      out[row + B] = d;
      if (d < bestD) {
        bestD = d;
        best = row + B;
      }
    }
  }
  return best;
}

/** Nearest centre of token x[off..]: its code and squared distance (no N_h² array kept). */
export function nearestCentre(
  t: StageTables,
  x: Float32Array,
  off: number,
  scratch: { alpha: Float64Array; beta: Float64Array },
): { code: number; sqDist: number } {
  const { alpha, beta } = scratch;
  tokenTerms(t, x, off, alpha, beta);
  const n = t.halfSize;
  const q = t.q;
  let best = 0;
  let bestD = Infinity;
  for (let A = 0; A < n; A++) {
    const a = alpha[A]!;
    const row = A * n;
    for (let B = 0; B < n; B++) {
      const d = a + beta[B]! + q[row + B]!;
      if (d < bestD) {
        bestD = d;
        best = row + B;
      }
    }
  }
  return { code: best, sqDist: Math.max(0, bestD) };
}

/** Subtracts centre `code` of θ [2·N_h, P] from x[off..] (PI layout), in place. */
export function subtractCentre(theta: Float32Array, halfSize: number, pairs: number, code: number, x: Float32Array, off: number): void {
  const A = Math.floor(code / halfSize);
  const B = code - A * halfSize;
  const xA = 2 * A * pairs;
  const xB = 2 * B * pairs;
  for (let j = 0; j < pairs; j++) {
    x[off + 2 * j] -= theta[xA + j]! - theta[xB + pairs + j]!;
    x[off + 2 * j + 1] -= theta[xA + pairs + j]! + theta[xB + j]!;
  }
}

/** Adds centre `code` of θ to out[off..] (PI layout), in place. */
export function addCentre(theta: Float32Array, halfSize: number, pairs: number, code: number, out: Float32Array, off: number): void {
  const A = Math.floor(code / halfSize);
  const B = code - A * halfSize;
  const xA = 2 * A * pairs;
  const xB = 2 * B * pairs;
  for (let j = 0; j < pairs; j++) {
    out[off + 2 * j] += theta[xA + j]! - theta[xB + pairs + j]!;
    out[off + 2 * j + 1] += theta[xA + pairs + j]! + theta[xB + j]!;
  }
}
