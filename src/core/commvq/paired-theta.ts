import type { LayerKeyCodebook } from '../keys/codebook.js';

/**
 * θ of one layer laid out for attention on codes (kernels/commvq_key_logits.cu): codeword i of stage r and group g at
 * pair j as the pair (X, Y) = (θ[r, g, 2i, j], θ[r, g, 2i+1, j]), so that one 16-byte read gives a lane four pairs'
 * complex values. Values as f32; the device copy rounds them to f16 once (`fromArray(…, 'f16')`).
 *
 *   [R, G, 2·N_h, P] (LayerKeyCodebook.theta)  →  [R, G, N_h, P, 2]
 *   const table = backend.fromArray(pairedTheta(codebook), [R, G, 64, P, 2], 'f16');
 */
export function pairedTheta(cb: LayerKeyCodebook): Float32Array {
  const { residuals: R, groups: G, halfSize: Nh, pairs: P } = cb.shape;
  const out = new Float32Array(R * G * Nh * P * 2);
  for (let rg = 0; rg < R * G; rg++) {
    const stage = cb.theta.subarray(rg * 2 * Nh * P, (rg + 1) * 2 * Nh * P);
    for (let i = 0; i < Nh; i++) {
      const o = (rg * Nh + i) * P * 2;
      for (let j = 0; j < P; j++) {
        out[o + 2 * j] = stage[2 * i * P + j]!;
        out[o + 2 * j + 1] = stage[(2 * i + 1) * P + j]!;
      }
    }
  }
  return out;
}
