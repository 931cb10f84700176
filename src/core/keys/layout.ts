import { CommvqError } from '../errors.js';

/**
 * Channel layouts of one key vector (spec §0.2) and the data preparation of §3.2: per-token norm over all channels,
 * then one pair-interleaved (PI) array per group (= KV head).
 *
 * HF layout (what k_proj writes): channel D_h·h + c of head h, RoPE pairs c with c + P (P = D_h/2, rotate-half).
 * PI layout (inside all key-codebook code): PI[2j + t] = HF[t·P + j] within a head, j < P, t ∈ {0, 1}, so pair j is
 * the complex number PI[2j] + i·PI[2j+1].
 */

/** One head's D_h channels from HF to PI layout: `out[2j + t] = x[t·P + j]`. */
export function hfToPi(x: ArrayLike<number>, headDim: number, out = new Float32Array(headDim), xOff = 0, outOff = 0): Float32Array {
  const P = headDim >> 1;
  for (let j = 0; j < P; j++) {
    out[outOff + 2 * j] = x[xOff + j]!;
    out[outOff + 2 * j + 1] = x[xOff + P + j]!;
  }
  return out;
}

/** One head's D_h channels from PI back to HF layout: `out[t·P + j] = x[2j + t]`. */
export function piToHf(x: ArrayLike<number>, headDim: number, out = new Float32Array(headDim), xOff = 0, outOff = 0): Float32Array {
  const P = headDim >> 1;
  for (let j = 0; j < P; j++) {
    out[outOff + j] = x[xOff + 2 * j]!;
    out[outOff + P + j] = x[xOff + 2 * j + 1]!;
  }
  return out;
}

/** Keys ready for the codebook: one [N, D_h] PI array per group, rows divided by their token's norm. */
export interface PreparedKeys {
  readonly tokens: number;
  readonly groups: number;
  readonly headDim: number;
  /** groups[g]: [N, D_h] f32, PI layout, x_t/‖x_t‖ restricted to head g */
  readonly data: Float32Array[];
  /** ‖x_t‖ over all G·D_h channels, [N] (0 for an all-zero token, whose normalised row stays 0) */
  readonly norms: Float32Array;
}

/**
 * Spec §3.2 steps 3–5: rows [N, G·D_h] (HF, pre-RoPE) → per-token norm over all channels and one normalised PI
 * array per group. A NaN or infinite value is a CommvqError naming the token (`what` says which data).
 *
 *   const { data, norms } = prepareKeys(rows, 8, 128, 'layer 3');   // data[g]: [N, 128]
 */
export function prepareKeys(rows: Float32Array, groups: number, headDim: number, what = 'keys'): PreparedKeys {
  const width = groups * headDim;
  if (headDim % 2 !== 0) throw new CommvqError(`${what}: head_dim ${headDim} is odd; RoPE pairs need an even head_dim`);
  if (rows.length % width !== 0) throw new CommvqError(`${what}: ${rows.length} values are not whole rows of ${width}`);
  const N = rows.length / width;
  const data = Array.from({ length: groups }, () => new Float32Array(N * headDim));
  const norms = new Float32Array(N);
  for (let t = 0; t < N; t++) {
    const at = t * width;
    let s = 0;
    for (let c = 0; c < width; c++) s += rows[at + c]! * rows[at + c]!;
    if (!Number.isFinite(s)) throw new CommvqError(`${what}: token ${t} holds NaN or infinite values`, 'collect the keys again; the model produced non-finite activations');
    const n = Math.sqrt(s);
    norms[t] = n;
    const inv = n > 0 ? 1 / n : 0;
    for (let g = 0; g < groups; g++) {
      const dst = data[g]!;
      const P = headDim >> 1;
      const src = at + g * headDim;
      const o = t * headDim;
      for (let j = 0; j < P; j++) {
        dst[o + 2 * j] = rows[src + j]! * inv;
        dst[o + 2 * j + 1] = rows[src + P + j]! * inv;
      }
    }
  }
  return { tokens: N, groups, headDim, data, norms };
}

/** Rows `indices` of V [N, D] gathered into [indices.length, D] (the EM's initial centres). */
export function gatherRows(V: Float32Array, indices: Int32Array, D: number): Float32Array {
  const out = new Float32Array(indices.length * D);
  indices.forEach((row, c) => out.set(V.subarray(row * D, row * D + D), c * D));
  return out;
}
