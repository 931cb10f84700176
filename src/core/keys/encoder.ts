import { CommvqError } from '../errors.js';
import type { LayerKeyCodebook } from './codebook.js';
import { addCentre, nearestCentre, stageTables, subtractCentre, tokenScratch, type StageTables } from './distance.js';
import { prepareKeys } from './layout.js';

/**
 * The key encoder and decoder shared by training, the report and the compressed cache (spec §6.4, in f32 as §10.2
 * advises): per-token norm over all channels, then per group greedy residual nearest neighbour with the
 * structured distance — at stage r the code is argmin_c ‖V − C_r[c]‖ (first index on ties), then V ← V − C_r[code].
 * Decoding: k̂_t = n_t · Σ_r C_r[code_{r,t}] per group, back in HF layout.
 */

export interface EncodedKeys {
  readonly tokens: number;
  /** codes [R, G, N] (N_h² ≤ 65536, so each fits in 16 bits) */
  readonly codes: Uint16Array;
  /** n_t = ‖k_t‖ over all channels, [N] */
  readonly norms: Float32Array;
}

/** Tables of every stage of one group (built once per encode call). */
function groupTables(cb: LayerKeyCodebook, g: number): StageTables[] {
  const { residuals, halfSize, pairs } = cb.shape;
  return Array.from({ length: residuals }, (_, r) => stageTables(cb.stage(r, g), halfSize, pairs));
}

/**
 * Greedy residual encoding of one group's normalised PI rows V [N, D_h], in place (V ends as the residual).
 * Writes codes[r·stride + n] when `codes` is given; `onStage(r, Σ_n w_n·‖V_n‖²)` after each stage (w = `weights`,
 * default 1).
 */
export function encodeGroup(
  cb: LayerKeyCodebook,
  g: number,
  V: Float32Array,
  out: { codes?: Uint16Array; codeOffset?: number; codeStride?: number; weights?: Float32Array; onStage?: (r: number, sqSum: number) => void } = {},
): void {
  const { halfSize, pairs, residuals } = cb.shape;
  const D = 2 * pairs;
  const N = V.length / D;
  const tables = groupTables(cb, g);
  const scratch = tokenScratch(halfSize);
  for (let r = 0; r < residuals; r++) {
    const theta = cb.stage(r, g);
    let sum = 0;
    for (let t = 0; t < N; t++) {
      const { code } = nearestCentre(tables[r]!, V, t * D, scratch);
      subtractCentre(theta, halfSize, pairs, code, V, t * D);
      if (out.codes) out.codes[(out.codeOffset ?? 0) + r * (out.codeStride ?? N) + t] = code;
      if (out.onStage) {
        let s = 0;
        for (let k = 0; k < D; k++) s += V[t * D + k]! ** 2;
        sum += (out.weights ? out.weights[t]! : 1) * s;
      }
    }
    out.onStage?.(r, sum);
  }
}

function checkWidth(cb: LayerKeyCodebook, rows: Float32Array): number {
  const width = cb.shape.groups * cb.headDim;
  if (rows.length % width !== 0) throw new CommvqError(`encodeKeys: ${rows.length} values are not whole rows of ${width} (${cb.shape.groups} heads × ${cb.headDim})`);
  return rows.length / width;
}

/**
 * Codes and norms of keys [N, G·D_h] (HF layout, pre-RoPE).
 *
 *   const enc = encodeKeys(codebook, keys);          // enc.codes [R, G, N], enc.norms [N]
 *   const approx = decodeKeys(codebook, enc);         // [N, G·D_h] HF
 */
export function encodeKeys(cb: LayerKeyCodebook, rows: Float32Array): EncodedKeys {
  const N = checkWidth(cb, rows);
  const { groups, residuals } = cb.shape;
  const keys = prepareKeys(rows, groups, cb.headDim);
  const codes = new Uint16Array(residuals * groups * N);
  for (let g = 0; g < groups; g++) encodeGroup(cb, g, keys.data[g]!, { codes, codeOffset: g * N, codeStride: groups * N });
  return { tokens: N, codes, norms: keys.norms };
}

/** Keys [N, G·D_h] (HF layout) rebuilt from codes and norms. */
export function decodeKeys(cb: LayerKeyCodebook, enc: EncodedKeys): Float32Array {
  const { groups, residuals, halfSize, pairs } = cb.shape;
  const D = 2 * pairs;
  const N = enc.tokens;
  const out = new Float32Array(N * groups * D);
  const pi = new Float32Array(D);
  for (let g = 0; g < groups; g++) {
    for (let t = 0; t < N; t++) {
      pi.fill(0);
      for (let r = 0; r < residuals; r++) addCentre(cb.stage(r, g), halfSize, pairs, enc.codes[(r * groups + g) * N + t]!, pi, 0);
      const n = enc.norms[t]!;
      const o = (t * groups + g) * D;
      for (let j = 0; j < pairs; j++) {
        out[o + j] = n * pi[2 * j]!;
        out[o + pairs + j] = n * pi[2 * j + 1]!;
      }
    }
  }
  return out;
}

/** Per-stage reconstruction errors of keys under a codebook, in key units (squared norms as weights). */
export interface StageErrors {
  readonly tokens: number;
  /** Σ_n ‖k_{n,g}‖² per group [G] */
  readonly power: Float64Array;
  /** Σ_n ‖k_{n,g} − k̂_{n,g}‖² after stage r, [R, G] */
  readonly error: Float64Array;
}

/** Encodes keys [N, G·D_h] (HF) and sums the squared error of every group after every stage. */
export function stageErrors(cb: LayerKeyCodebook, rows: Float32Array): StageErrors {
  const N = checkWidth(cb, rows);
  const { groups, residuals } = cb.shape;
  const keys = prepareKeys(rows, groups, cb.headDim);
  const n2 = keys.norms.map((n) => n * n);
  const power = new Float64Array(groups);
  const error = new Float64Array(residuals * groups);
  const D = cb.headDim;
  for (let g = 0; g < groups; g++) {
    const V = keys.data[g]!;
    for (let t = 0; t < N; t++) {
      let s = 0;
      for (let k = 0; k < D; k++) s += V[t * D + k]! ** 2;
      power[g] += n2[t]! * s;
    }
    encodeGroup(cb, g, V, { weights: n2, onStage: (r, sum) => (error[r * groups + g] = sum) });
  }
  return { tokens: N, power, error };
}
