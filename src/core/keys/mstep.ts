import { CommvqError } from '../errors.js';

/**
 * The closed-form M-step of spec §3.4 from marginal statistics, never from the N × N_h² soft assignment.
 *
 * The reference solves θ = (TᵀWT)⁻¹·TᵀW·M̃ (128×128 real). With W·M̃ = S (S_c = Σ_n P[n,c]·V_n) and the ±1 pattern
 * of T, both sides only need
 *   w[A,B] = Σ_n P[n, A·N_h + B] + 1e-8       (N_h × N_h)
 *   SA_i   = Σ_n (Σ_B P[n, i·N_h + B])·V_n    (marginal over B, N_h × D_h)
 *   SB_i   = Σ_n (Σ_A P[n, A·N_h + i])·V_n    (marginal over A, N_h × D_h)
 * In complex form TᵀWT is the Hermitian H = diag(Σ_B w[i,B] + Σ_A w[A,i]) + i·(w − wᵀ) and TᵀS per pair j is
 * b_i = sA_{i,j} − i·sB_{i,j} (sA_{i,j} = SA_i[2j] + i·SA_i[2j+1]); the same H serves all P pairs. Solved by a complex
 * Cholesky in f64 (the regulariser 1e-8 leaves H nearly singular along directions no used centre sees; f64 keeps
 * them from turning into large spurious θ).
 */

/** Soft statistics of one E-step, accumulated over tokens (f64). */
export interface EStats {
  readonly halfSize: number;
  readonly headDim: number;
  /** Σ_n P[n, c], [N_h²] (without the 1e-8) */
  readonly w: Float64Array;
  /** SA [N_h, D_h] then SB [N_h, D_h] */
  readonly s: Float64Array;
  /** Σ_n n_n²·min_c ‖V_n − C_c‖² (for hard_mse) */
  hardSum: number;
}

export function emptyStats(halfSize: number, headDim: number): EStats {
  return { halfSize, headDim, w: new Float64Array(halfSize * halfSize), s: new Float64Array(2 * halfSize * headDim), hardSum: 0 };
}

/** The reference's per-centre regulariser (w_c = Σ_n P[n,c] + 1e-8). */
export const WEIGHT_EPS = 1e-8;

/**
 * θ [2·N_h, P] (f32) minimising Σ_n Σ_c P[n,c]·‖V_n − C_c(θ)‖² for the statistics `st`.
 *
 *   const theta = solveTheta(stats);
 */
export function solveTheta(st: EStats): Float32Array {
  const n = st.halfSize;
  const D = st.headDim;
  const P = D >> 1;
  // H = L·Lᴴ, L lower triangular with real diagonal; real and imaginary parts in separate arrays.
  const hr = new Float64Array(n * n);
  const hi = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let d = 0;
    for (let k = 0; k < n; k++) d += st.w[i * n + k]! + st.w[k * n + i]! + 2 * WEIGHT_EPS;
    hr[i * n + i] = d;
    for (let k = 0; k < n; k++) hi[i * n + k] = st.w[i * n + k]! - st.w[k * n + i]!;
  }
  const lr = new Float64Array(n * n);
  const li = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    let d = hr[k * n + k]!;
    for (let m = 0; m < k; m++) d -= lr[k * n + m]! ** 2 + li[k * n + m]! ** 2;
    if (!(d > 0)) throw new CommvqError(`key M-step: the weighted least-squares matrix is not positive definite (pivot ${d} at ${k})`);
    const lkk = Math.sqrt(d);
    lr[k * n + k] = lkk;
    for (let i = k + 1; i < n; i++) {
      // L_ik = (H_ik − Σ_m L_im·conj(L_km)) / L_kk
      let sr = hr[i * n + k]!;
      let si = hi[i * n + k]!;
      for (let m = 0; m < k; m++) {
        const ar = lr[i * n + m]!, ai = li[i * n + m]!, br = lr[k * n + m]!, bi = li[k * n + m]!;
        sr -= ar * br + ai * bi;
        si -= ai * br - ar * bi;
      }
      lr[i * n + k] = sr / lkk;
      li[i * n + k] = si / lkk;
    }
  }
  const theta = new Float32Array(2 * n * P);
  const yr = new Float64Array(n);
  const yi = new Float64Array(n);
  const sa = st.s;
  const sb = n * D;
  for (let j = 0; j < P; j++) {
    // b_i = sA − i·sB = (SA[2j] + SB[2j+1]) + i·(SA[2j+1] − SB[2j]); forward L·y = b
    for (let i = 0; i < n; i++) {
      let re = sa[i * D + 2 * j]! + sa[sb + i * D + 2 * j + 1]!;
      let im = sa[i * D + 2 * j + 1]! - sa[sb + i * D + 2 * j]!;
      for (let m = 0; m < i; m++) {
        const ar = lr[i * n + m]!, ai = li[i * n + m]!;
        re -= ar * yr[m]! - ai * yi[m]!;
        im -= ar * yi[m]! + ai * yr[m]!;
      }
      yr[i] = re / lr[i * n + i]!;
      yi[i] = im / lr[i * n + i]!;
    }
    // backward Lᴴ·z = y, (Lᴴ)_{im} = conj(L_mi)
    for (let i = n - 1; i >= 0; i--) {
      let re = yr[i]!;
      let im = yi[i]!;
      for (let m = i + 1; m < n; m++) {
        const ar = lr[m * n + i]!, ai = -li[m * n + i]!;
        re -= ar * yr[m]! - ai * yi[m]!;
        im -= ar * yi[m]! + ai * yr[m]!;
      }
      yr[i] = re / lr[i * n + i]!;
      yi[i] = im / lr[i * n + i]!;
      theta[2 * i * P + j] = yr[i]!;
      theta[(2 * i + 1) * P + j] = yi[i]!;
    }
  }
  return theta;
}
