import { centresFromTheta } from './codebook.js';
import type { EmBackend } from './em.js';
import { denseSqDistances } from './estep.js';
import { WEIGHT_EPS } from './mstep.js';
import { gatherRows } from './layout.js';

/**
 * The plain EM step, written as the reference writes it (spec §3.3–3.4), kept as the test reference for the
 * structured one: explicit centres C = Tθ, distances to each, the N × N_h² soft assignment P held whole, then
 * θ = (TᵀWT)⁻¹·TᵀW·M̃ with an explicit T ∈ {−1,0,1}^{2K × 2N_h} and a generic linear solve. Small sizes only.
 */

/** T of spec §3.3 for N_h codewords: [2·N_h², 2·N_h], row-major (f64). */
export function tMatrix(halfSize: number): Float64Array {
  const K = halfSize * halfSize;
  const cols = 2 * halfSize;
  const T = new Float64Array(2 * K * cols);
  for (let A = 0; A < halfSize; A++) {
    for (let B = 0; B < halfSize; B++) {
      const c = A * halfSize + B;
      T[2 * c * cols + 2 * A] += 1;
      T[2 * c * cols + 2 * B + 1] += -1;
      T[(2 * c + 1) * cols + 2 * B] += 1;
      T[(2 * c + 1) * cols + 2 * A + 1] += 1;
    }
  }
  return T;
}

/** Solves A·X = B (A [n, n], B [n, m], row-major f64) by Gaussian elimination with partial pivoting. */
export function solveLinear(A: Float64Array, B: Float64Array, n: number, m: number): Float64Array {
  const a = Float64Array.from(A);
  const b = Float64Array.from(B);
  for (let k = 0; k < n; k++) {
    let piv = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(a[i * n + k]!) > Math.abs(a[piv * n + k]!)) piv = i;
    if (piv !== k) {
      for (let j = 0; j < n; j++) [a[k * n + j], a[piv * n + j]] = [a[piv * n + j]!, a[k * n + j]!];
      for (let j = 0; j < m; j++) [b[k * m + j], b[piv * m + j]] = [b[piv * m + j]!, b[k * m + j]!];
    }
    const d = a[k * n + k]!;
    for (let i = k + 1; i < n; i++) {
      const f = a[i * n + k]! / d;
      if (f === 0) continue;
      for (let j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j]!;
      for (let j = 0; j < m; j++) b[i * m + j] -= f * b[k * m + j]!;
    }
  }
  for (let k = n - 1; k >= 0; k--) {
    for (let j = 0; j < m; j++) {
      let s = b[k * m + j]!;
      for (let i = k + 1; i < n; i++) s -= a[k * n + i]! * b[i * m + j]!;
      b[k * m + j] = s / a[k * n + k]!;
    }
  }
  return b;
}

/** Plain soft assignment: P [N, K] = softmax(−‖V_n − C_c‖/τ) and Σ_n n_n²·min_c ‖V_n − C_c‖². */
export function plainAssign(V: Float32Array, n2: Float32Array, centres: Float32Array, K: number, invTau: number): { P: Float64Array; hardSum: number } {
  const D = centres.length / K;
  const N = V.length / D;
  const P = new Float64Array(N * K);
  const d2 = new Float64Array(K);
  let hardSum = 0;
  for (let t = 0; t < N; t++) {
    const best = denseSqDistances(centres, K, V, t * D, d2);
    hardSum += n2[t]! * d2[best]!;
    const m = Math.sqrt(d2[best]!);
    let Z = 0;
    for (let c = 0; c < K; c++) Z += P[t * K + c] = Math.exp(-(Math.sqrt(d2[c]!) - m) * invTau);
    for (let c = 0; c < K; c++) P[t * K + c]! /= Z;
  }
  return { P, hardSum };
}

/** Plain M-step: w_c = Σ_n P + 1e-8, m_c = Σ_n P·V_n / w_c, θ = (TᵀWT)⁻¹·TᵀW·M̃ (generic solve). */
export function plainMStep(V: Float32Array, P: Float64Array, halfSize: number): Float32Array {
  const K = halfSize * halfSize;
  const N = P.length / K;
  const D = V.length / N;
  const pairs = D >> 1;
  const rows = 2 * K;
  const cols = 2 * halfSize;
  const w = new Float64Array(K).fill(WEIGHT_EPS);
  const mt = new Float64Array(rows * pairs); // M̃[2c + t, j] = m_c[2j + t]
  for (let t = 0; t < N; t++) {
    for (let c = 0; c < K; c++) {
      const p = P[t * K + c]!;
      w[c] += p;
      for (let k = 0; k < D; k++) mt[(2 * c + (k & 1)) * pairs + (k >> 1)] += p * V[t * D + k]!;
    }
  }
  for (let r = 0; r < rows; r++) for (let j = 0; j < pairs; j++) mt[r * pairs + j] /= w[r >> 1]!;
  const T = tMatrix(halfSize);
  const lhs = new Float64Array(cols * cols);
  const rhs = new Float64Array(cols * pairs);
  for (let r = 0; r < rows; r++) {
    const wr = w[r >> 1]!;
    for (let p = 0; p < cols; p++) {
      const tp = T[r * cols + p]!;
      if (tp === 0) continue;
      for (let q = 0; q < cols; q++) lhs[p * cols + q] += tp * wr * T[r * cols + q]!;
      for (let j = 0; j < pairs; j++) rhs[p * pairs + j] += tp * wr * mt[r * pairs + j]!;
    }
  }
  return Float32Array.from(solveLinear(lhs, rhs, cols, pairs));
}

/** EM with plain steps: the same loop as CpuEmBackend, every step done the slow, explicit way. */
export class PlainEmBackend implements EmBackend<Float32Array> {
  readonly tokens: number;
  readonly headDim: number;
  private P: Float64Array | undefined;

  constructor(
    readonly V: Float32Array,
    readonly n2: Float32Array,
    readonly halfSize: number,
  ) {
    this.tokens = n2.length;
    this.headDim = V.length / n2.length;
  }

  init(indices: Int32Array, invTau: number): Float32Array {
    const centres = gatherRows(this.V, indices, this.headDim);
    return plainMStep(this.V, plainAssign(this.V, this.n2, centres, indices.length, invTau).P, this.halfSize);
  }

  eStep(theta: Float32Array, invTau: number): number {
    const K = this.halfSize * this.halfSize;
    const { P, hardSum } = plainAssign(this.V, this.n2, centresFromTheta(theta, this.halfSize, this.headDim >> 1), K, invTau);
    this.P = P;
    return hardSum;
  }

  mStep(): Float32Array {
    if (!this.P) throw new Error('mStep before eStep');
    return plainMStep(this.V, this.P, this.halfSize);
  }

  keep(theta: Float32Array): Float32Array {
    return theta;
  }

  residual(theta: Float32Array): number {
    const K = this.halfSize * this.halfSize;
    const D = this.headDim;
    const centres = centresFromTheta(theta, this.halfSize, D >> 1);
    const d2 = new Float64Array(K);
    let sum = 0;
    for (let t = 0; t < this.tokens; t++) {
      const best = denseSqDistances(centres, K, this.V, t * D, d2);
      let s = 0;
      for (let k = 0; k < D; k++) s += (this.V[t * D + k] -= centres[best * D + k]!) ** 2;
      sum += this.n2[t]! * s;
    }
    return sum;
  }

  read(theta: Float32Array): Float32Array {
    return theta;
  }
}
