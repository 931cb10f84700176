import { structuredSqDistances, tokenScratch, type StageTables } from './distance.js';
import { emptyStats, type EStats } from './mstep.js';

/**
 * The soft E-step of spec §3.4 on the CPU: per token the (non-squared) distances d_c = ‖V_n − C_c‖ to all N_h²
 * centres, P[n,·] = softmax(−d/τ), the hard minimum for hard_mse; P is folded into the M-step statistics (EStats)
 * token by token, so the N × N_h² matrix is never held. Cells beyond 50τ of the minimum (weights below e^−50) are skipped.
 */

/**
 * Squared distances of token x[off..off+D) to explicit centres [K, D] (the init step's data-row centres), directly
 * as Σ (x − c)²: the plain definition.
 */
export function denseSqDistances(centres: Float32Array, K: number, x: Float32Array, off: number, out: Float64Array): number {
  const D = centres.length / K;
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < K; c++) {
    let s = 0;
    const o = c * D;
    for (let k = 0; k < D; k++) {
      const diff = x[off + k]! - centres[o + k]!;
      s += diff * diff;
    }
    out[c] = s;
    if (s < bestD) {
      bestD = s;
      best = c;
    }
  }
  return best;
}

/** The same by the expansion ‖x‖² + ‖c‖² − 2·x·c (f64; `cn` [K] the centres' squared norms). */
function expandedSqDistances(centres: Float32Array, cn: Float64Array, x: Float32Array, off: number, out: Float64Array): number {
  const K = cn.length;
  const D = centres.length / K;
  let xx = 0;
  for (let k = 0; k < D; k++) xx += x[off + k]! * x[off + k]!;
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < K; c++) {
    let d0 = 0, d1 = 0, d2_ = 0, d3 = 0; // four chains: V8 does not reorder float sums itself
    const o = c * D;
    let k = 0;
    for (; k + 4 <= D; k += 4) {
      d0 += x[off + k]! * centres[o + k]!;
      d1 += x[off + k + 1]! * centres[o + k + 1]!;
      d2_ += x[off + k + 2]! * centres[o + k + 2]!;
      d3 += x[off + k + 3]! * centres[o + k + 3]!;
    }
    for (; k < D; k++) d0 += x[off + k]! * centres[o + k]!;
    const s = Math.max(0, xx + cn[c]! - 2 * (d0 + d1 + d2_ + d3));
    out[c] = s;
    if (s < bestD) {
      bestD = s;
      best = c;
    }
  }
  return best;
}

/**
 * Cells farther than 50τ from the minimum weigh < e^−50 ≈ 2e−22 each against the nearest one's 1: all N_h² of them
 * together change Z by less than f64 rounding, so they are skipped (no exp, no sqrt).
 */
const CUT = 50;

/**
 * Adds one token's soft assignment to `st`: d2 [N_h²] its squared distances, `best` the argmin, v = x[off..] the
 * token (PI, D_h), n2 its squared norm. `e` is scratch [N_h² + 2·N_h], `cells` scratch [N_h²].
 */
export function accumulateToken(st: EStats, d2: Float64Array, best: number, x: Float32Array, off: number, n2: number, invTau: number, e: Float64Array, cells: Int32Array): void {
  const n = st.halfSize;
  const K = n * n;
  const D = st.headDim;
  const m2 = d2[best]!;
  st.hardSum += n2 * m2;
  const m = Math.sqrt(m2);
  const cut = m + CUT / invTau;
  const cut2 = cut * cut;
  let Z = 0;
  let count = 0;
  for (let c = 0; c < K; c++) {
    const d = d2[c]!;
    if (d > cut2) continue;
    const v = Math.exp(-(Math.sqrt(d) - m) * invTau);
    e[count] = v;
    cells[count++] = c;
    Z += v;
  }
  const invZ = 1 / Z;
  const pa = e.subarray(K, K + n).fill(0); // row marginals
  const pb = e.subarray(K + n, K + 2 * n).fill(0); // column marginals
  for (let i = 0; i < count; i++) {
    const c = cells[i]!;
    const p = e[i]! * invZ;
    const A = Math.floor(c / n);
    st.w[c] += p;
    pa[A] += p;
    pb[c - A * n] += p;
  }
  for (let A = 0; A < n; A++) if (pa[A] !== 0) addScaled(st.s, A * D, pa[A]!, x, off, D);
  for (let B = 0; B < n; B++) if (pb[B] !== 0) addScaled(st.s, (n + B) * D, pb[B]!, x, off, D);
}

function addScaled(dst: Float64Array, at: number, a: number, x: Float32Array, off: number, D: number): void {
  for (let k = 0; k < D; k++) dst[at + k] += a * x[off + k]!;
}

/**
 * E-step statistics of V [N, D_h] (PI, normalised) against the structured centres of `tables` at temperature
 * 1/invTau; n2 [N] the tokens' squared norms (for hard_mse in key units).
 */
export function eStepStructured(V: Float32Array, n2: Float32Array, tables: StageTables, invTau: number): EStats {
  const n = tables.halfSize;
  const D = 2 * tables.pairs;
  const N = V.length / D;
  const st = emptyStats(n, D);
  const d2 = new Float64Array(n * n);
  const e = new Float64Array(n * n + 2 * n);
  const cells = new Int32Array(n * n);
  const scratch = tokenScratch(n);
  for (let t = 0; t < N; t++) {
    const best = structuredSqDistances(tables, V, t * D, d2, scratch);
    accumulateToken(st, d2, best, V, t * D, n2[t]!, invTau, e, cells);
  }
  return st;
}

/** E-step statistics against explicit centres [N_h², D_h] (the init step, whose centres are data rows). */
export function eStepDense(V: Float32Array, n2: Float32Array, centres: Float32Array, halfSize: number, invTau: number): EStats {
  const K = halfSize * halfSize;
  const D = centres.length / K;
  const N = V.length / D;
  const st = emptyStats(halfSize, D);
  const d2 = new Float64Array(K);
  const e = new Float64Array(K + 2 * halfSize);
  const cn = new Float64Array(K);
  for (let c = 0; c < K; c++) for (let k = 0; k < D; k++) cn[c] += centres[c * D + k]! ** 2;
  const cells = new Int32Array(K);
  for (let t = 0; t < N; t++) {
    const best = expandedSqDistances(centres, cn, V, t * D, d2);
    accumulateToken(st, d2, best, V, t * D, n2[t]!, invTau, e, cells);
  }
  return st;
}
