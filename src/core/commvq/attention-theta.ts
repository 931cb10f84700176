/**
 * The key codebook θ as attention on codes reads it on the GPU (kernels/commvq_key_logits.cu): f16, laid out so that
 * one ldmatrix gathers a codeword's row of (X, Y) pairs. Host arithmetic only: the device cache uploads it once per
 * layer (device-books.ts), measure-memory counts it.
 */
import { CommvqError } from '../errors.js';
import { roundF16 } from '../tensor/dtype.js';

/**
 * Stages of θ the key kernel reads for R residual stages: R, and with an odd R one more — stage 0's remainder
 * θ − f16(θ), which fills the slot an odd R leaves free in the kernel's last step (two stages per step).
 */
export function attentionStages(residuals: number): number {
  return residuals + (residuals % 2);
}

/**
 * θ in the key kernel's layout: [S, H_kv, 64, P, 2] (X_i, Y_i of codeword i at pair j side by side; S =
 * attentionStages(R), stage R being stage 0's remainder θ − f16(θ)) from LayerKeyCodebook.theta [R, H_kv, 128, P]
 * (rows 2i = X_i, 2i + 1 = Y_i), to be uploaded as f16: the one rounding of the key path (commvq_key_logits.cu says
 * what it costs).
 *
 *   const t = attentionTheta(cb.theta, R, H_kv, P);
 *   const theta = backend.fromArray(t, [t.length], 'f16');
 */
export function attentionTheta(theta: Float32Array, residuals: number, kvHeads: number, pairs: number): Float32Array {
  const stage = kvHeads * 64 * 2 * pairs; // values of one stage
  if (theta.length !== residuals * stage) throw new CommvqError(`attention θ: ${theta.length} values, [${residuals}, ${kvHeads}, 128, ${pairs}] needs ${residuals * stage}`);
  const out = new Float32Array(attentionStages(residuals) * stage);
  for (let row = 0; row < residuals * kvHeads * 64; row++) { // (r, g, codeword)
    for (let j = 0; j < pairs; j++) {
      out[(row * pairs + j) * 2] = theta[2 * row * pairs + j]!;
      out[(row * pairs + j) * 2 + 1] = theta[(2 * row + 1) * pairs + j]!;
    }
  }
  for (let i = residuals * stage; i < out.length; i++) out[i] = out[i - residuals * stage]! - roundF16(out[i - residuals * stage]!);
  return out;
}
