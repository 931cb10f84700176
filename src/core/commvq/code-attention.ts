import type { LayerKeyCodebook } from '../keys/codebook.js';

/**
 * Attention of one query token over compressed tokens without dequantizing them (spec §6.8): the reference
 * implementation every kernel is tested against. Complex notation per pair j of a head (HF rotate-half layout):
 * q_j = q[j] + i·q[j + D_h/2]; codeword z_{r,j,i} = θ_r[2i, j] + i·θ_r[2i+1, j]; code c = 64·A + B.
 *
 * Keys: P_{r,j,i} = q_j·conj(z_{r,j,i}) (a table per query head, independent of the tokens); per token t
 *   U^A_j = Σ_r P_{r,j,A_{r,t}},  U^B_j = Σ_r P_{r,j,B_{r,t}},  φ = p_t·invFreq_j,
 *   logit_t = n_t/√D_h · Σ_j [Re U^A cos φ + Im U^A sin φ + Im U^B cos φ − Re U^B sin φ].
 * Values: with attention weights a_t and ρ′_t = (ρ_t + ε)/(‖b_t E‖ + ε),
 *   out_h = ((Σ_t a_t ρ′_t b_t) · E[:, head h's channels]) ⊙ (ls_h + ε)   (the scale on channels: §7.2's fix).
 */

/** The per-query-head tables P: [R, pairs, N_h] complex as (re, im) pairs, f64. */
export function queryTables(cb: LayerKeyCodebook, group: number, q: Float32Array, qOffset: number): Float64Array {
  const { residuals: R, halfSize: N, pairs } = cb.shape;
  const out = new Float64Array(R * pairs * N * 2);
  for (let r = 0; r < R; r++) {
    const theta = cb.stage(r, group); // [2N, pairs]: row 2i = X_i, row 2i+1 = Y_i
    for (let j = 0; j < pairs; j++) {
      const q1 = q[qOffset + j]!;
      const q2 = q[qOffset + j + pairs]!;
      for (let i = 0; i < N; i++) {
        const X = theta[2 * i * pairs + j]!;
        const Y = theta[(2 * i + 1) * pairs + j]!;
        const o = ((r * pairs + j) * N + i) * 2;
        out[o] = q1 * X + q2 * Y; // Re(q·conj z)
        out[o + 1] = q2 * X - q1 * Y; // Im(q·conj z)
      }
    }
  }
  return out;
}

/**
 * Logits of one query head over compressed tokens.
 * codes: per token [R, G] (token-major: codes[(t·R + r)·G + g]); norms n_t; positions p_t; invFreq [pairs].
 */
export function codeLogits(
  cb: LayerKeyCodebook,
  group: number,
  table: Float64Array,
  codes: Uint16Array,
  norms: ArrayLike<number>,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
  out: Float64Array,
): void {
  const { residuals: R, groups: G, halfSize: N, pairs } = cb.shape;
  const scale = 1 / Math.sqrt(2 * pairs);
  for (let t = 0; t < norms.length; t++) {
    let logit = 0;
    for (let j = 0; j < pairs; j++) {
      let aRe = 0, aIm = 0, bRe = 0, bIm = 0;
      for (let r = 0; r < R; r++) {
        const c = codes[(t * R + r) * G + group]!;
        const A = Math.floor(c / N);
        const B = c % N;
        const base = (r * pairs + j) * N;
        aRe += table[(base + A) * 2]!;
        aIm += table[(base + A) * 2 + 1]!;
        bRe += table[(base + B) * 2]!;
        bIm += table[(base + B) * 2 + 1]!;
      }
      const phi = Math.fround(positions[t]! * invFreq[j]!);
      const cos = Math.cos(phi);
      const sin = Math.sin(phi);
      logit += aRe * cos + aIm * sin + bIm * cos - bRe * sin;
    }
    out[t] = norms[t]! * scale * logit;
  }
}

/**
 * out[c] += Σ_t w_t·ρ′_t·b_t · E[:, h·D_h + c] ⊙ (ls + ε), for one query head h over compressed tokens, where
 * bits are N_c 0/1 values per token (token-major, unpacked) and w the attention weights of those tokens.
 */
export function codeValues(
  weights: ArrayLike<number>,
  rhoPrime: ArrayLike<number>,
  bits: Float32Array,
  codeBits: number,
  codebook: Float32Array,
  featDim: number,
  head: number,
  headDim: number,
  scale: Float32Array,
  out: Float64Array,
): void {
  const sums = new Float64Array(codeBits);
  for (let t = 0; t < weights.length; t++) {
    const w = weights[t]! * rhoPrime[t]!;
    if (w === 0) continue;
    for (let d = 0; d < codeBits; d++) if (bits[t * codeBits + d]) sums[d] += w;
  }
  for (let c = 0; c < headDim; c++) {
    let acc = 0;
    for (let d = 0; d < codeBits; d++) acc += sums[d]! * codebook[d * featDim + head * headDim + c]!;
    out[c] += acc * (scale[head * headDim + c]! + 1e-6);
  }
}
