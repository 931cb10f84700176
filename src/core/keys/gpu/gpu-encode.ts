import type { CudaContext } from '../../backend/cuda/context.js';
import { asCuda, deviceOf, emptyTensor, tensorView, type CudaTensor } from '../../backend/cuda/cuda-tensor.js';
import type { CudaContextLike } from '../../backend/cuda/kernels.js';
import { downloadFrom, uploadTo, zeroFill } from '../../backend/cuda/ops/copies.js';
import * as k from '../../backend/cuda/ops/key-codebook.js';
import { cast } from '../../backend/cuda/ops/model.js';
import { tensorArg } from '../../backend/cuda/ops/tensor-args.js';
import { CommvqError } from '../../errors.js';
import { allOrNothing, type Tensor } from '../../tensor/tensor.js';
import type { LayerKeyCodebook } from '../codebook.js';
import type { StageErrors } from '../encoder.js';

/**
 * The key encoder on the GPU (spec §6.4), equal to `encodeKeys` (encoder.ts) up to f32 near-ties: per-token norm over
 * all G·D_h channels and the HF → PI permutation (key_prepare), then per group g and stage r the structured nearest
 * centre and the residual update, all stages and groups of a chunk in one launch (key_encode, with the θ tables of
 * key_layer_tables). One encoder for both users: the device CommVQ cache encodes its flushed blocks into device
 * buffers (`encodeKeysOnDevice`), train-key's report and the tests score held-out keys with it (`gpuStageErrors`, from
 * the same kernels plus per-stage error sums and per-group power). The EM trainer's key_assign (gpu-em.ts) is the
 * one-stage form of the same search, kept for training, where each stage's residual feeds the next stage's EM.
 *
 * Ownership: `encodeKeysOnDevice` returns its codes and n2; `dispose()` frees them only when the call allocated them
 * (no `out` given). A `DeviceKeyTables` passed in `layer.tables` stays the caller's; without one, a temporary one is
 * built and freed per call. All scratch is freed before the function returns (the work stays queued on the stream;
 * nothing synchronizes unless `sums` are asked for).
 */

/** One layer's key codebook on the device. */
export interface DeviceKeyLayer {
  /** θ f32 of R·G·128·(D_h/2) elements, ordered [R, G, 2·64, D_h/2] (LayerKeyCodebook.theta uploaded as is) */
  readonly theta: Tensor;
  /** R */
  readonly residuals: number;
  /** G = H_kv */
  readonly groups: number;
  /** D_h: 64 or 128 */
  readonly headDim: number;
  /** the θ handles built once (DeviceKeyTables.build); built per call when absent */
  readonly tables?: DeviceKeyTables;
}

/** Codes i32 [R, G, n] (the layout of encodeKeys) and n2 f32 [n] = squared token norms (n_t = √n2_t). */
export interface EncodedKeys {
  readonly codes: Tensor;
  readonly n2: Tensor;
}

/** What a report adds up: per-stage residual errors and per-group power (Σ over tokens, in f64). */
export interface StageSums {
  /** [R·G]: error[r·G + g] += Σ_t n2_t·‖v_{t,g} after stage r‖² (v normalised, so this is ‖k − k̂‖² of the head) */
  readonly error: Float64Array;
  /** [G]: power[g] += Σ_t ‖k_{t,g}‖² */
  readonly power: Float64Array;
}

export interface EncodeKeysOptions {
  /** where to write codes and n2 (else allocated and owned by the result) */
  readonly out?: EncodedKeys;
  /** i32 [1]: incremented once per token holding NaN or Inf (such a token gets n2 = 0, codes 0: it decodes to 0) */
  readonly bad?: Tensor;
  /** added into (waits for the GPU once per chunk): for reports, not the cache's hot path */
  readonly sums?: StageSums;
}

/** Scratch bytes of one chunk's normalised PI rows (and of the f32 copy of bf16 keys): bounds memory at n = 100K+. */
const CHUNK_BYTES = 64 << 20;
/** Tokens of one chunk are whole blocks of key_encode (4 warps × 16 tokens). */
const CHUNK_ALIGN = 64;

/**
 * The θ handles of every (r, g) of one layer as key_encode and key_assign read them (θ_{r,g} followed by its
 * data-free tables): f32 [R, G, thetaFloats(P)], e.g. 4.3 MB for R = 11, G = 8, D_h = 128, built in one launch. Keep
 * one across the encodes of a layer's chunks, or let `encodeKeysOnDevice` build a temporary one. One owner;
 * `dispose()` frees.
 *
 *   const tables = DeviceKeyTables.build(ctx, { theta, residuals: 11, groups: 8, headDim: 128 });
 *   encodeKeysOnDevice(ctx, { theta, residuals: 11, groups: 8, headDim: 128, tables }, kPre).dispose();
 *   tables.dispose();
 */
export class DeviceKeyTables {
  private constructor(
    private readonly handles: CudaTensor,
    readonly residuals: number,
    readonly groups: number,
    readonly headDim: number,
  ) {}

  static build(ctx: CudaContextLike, layer: Omit<DeviceKeyLayer, 'tables'>): DeviceKeyTables {
    const theta = thetaStages(layer);
    const { residuals: R, groups: G, headDim: D } = layer;
    const tables = new DeviceKeyTables(emptyTensor(ctx, [R, G, k.thetaFloats(D / 2)], 'f32'), R, G, D);
    k.layerTables(ctx, theta, tables.handles, D / 2);
    return tables;
  }

  /** The θ handles of every stage and group: f32 [R, G, thetaFloats(P)]. */
  get all(): CudaTensor {
    return this.handles;
  }

  dispose(): void {
    this.handles.dispose();
  }
}

/** The layer's θ as f32 [R, G, 128·P], after checking the layer's sizes. */
function thetaStages(layer: Omit<DeviceKeyLayer, 'tables'>): CudaTensor {
  const int = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new CommvqError(`device key encoder: ${name} must be a positive integer, got ${v}`);
  };
  int('residuals', layer.residuals);
  int('groups', layer.groups);
  if (layer.headDim !== 64 && layer.headDim !== 128) {
    throw new CommvqError(`device key encoder: head_dim ${layer.headDim} is not supported`, 'head_dim 64 and 128 are');
  }
  const stage = 128 * (layer.headDim / 2);
  const { residuals: R, groups: G } = layer;
  if (layer.theta.dtype !== 'f32' || layer.theta.shape.reduce((a, b) => a * b, 1) !== R * G * stage) {
    throw new CommvqError(`device key encoder: theta must be f32 of ${R * G * stage} elements (R ${R}, G ${G}, D_h ${layer.headDim}), got ${layer.theta.dtype} [${layer.theta.shape.join(', ')}]`);
  }
  return tensorView(layer.theta, 0, [R, G, stage]);
}

/** Tokens per chunk: whole blocks of key_encode, scratch ≤ CHUNK_BYTES. */
export function encodeChunkTokens(n: number, groups: number, headDim: number): number {
  const fit = Math.floor(CHUNK_BYTES / (groups * headDim * 4) / CHUNK_ALIGN) * CHUNK_ALIGN;
  return Math.max(1, Math.min(n, Math.max(CHUNK_ALIGN, fit)));
}

/**
 * Encodes pre-RoPE keys kPre [n, G·D_h] (f32, bf16 or f16, HF layout) under one layer's θ, enqueued on the context's
 * stream: codes i32 [R, G, n] and n2 f32 [n], as `encodeKeys` computes them.
 *
 *   const enc = encodeKeysOnDevice(ctx, { theta, residuals: 11, groups: 8, headDim: 128 }, kPre);   // kPre [128, 1024]
 *   launchPackKeys(ctx, { codes: enc.codes, n2: enc.n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, sequence: 0, rowStart, tokens: 128 });
 *   enc.dispose();
 */
export function encodeKeysOnDevice(ctx: CudaContextLike, layer: DeviceKeyLayer, kPre: Tensor, options: EncodeKeysOptions = {}): EncodedKeys & { dispose(): void } {
  thetaStages(layer);
  const { residuals: R, groups: G, headDim: D } = layer;
  const width = G * D;
  if (kPre.dtype !== 'f32' && kPre.dtype !== 'bf16' && kPre.dtype !== 'f16') {
    throw new CommvqError(`device key encoder: keys of dtype ${kPre.dtype} are not supported`, 'pass f32, bf16 or f16 keys');
  }
  if (kPre.shape.length !== 2 || kPre.shape[1] !== width) {
    throw new CommvqError(`device key encoder: keys [${kPre.shape.join(', ')}] are not [n, ${width}] (G ${G} × D_h ${D})`);
  }
  const n = kPre.shape[0]!;
  const t = layer.tables;
  if (t && (t.residuals !== R || t.groups !== G || t.headDim !== D)) {
    throw new CommvqError(`device key encoder: tables of [R ${t.residuals}, G ${t.groups}, D_h ${t.headDim}] do not fit the layer [R ${R}, G ${G}, D_h ${D}]`);
  }
  const { out, bad, sums } = options;
  const op = 'device key encoder';
  const owned = out ? [] : allOrNothing((s) => [s.keep(emptyTensor(ctx, [R, G, n], 'i32')), s.keep(emptyTensor(ctx, [n], 'f32'))]);
  const codes = tensorArg(ctx, op, 'codes', out?.codes ?? owned[0]!, 'i32', [R, G, n]);
  const n2 = tensorArg(ctx, op, 'n2', out?.n2 ?? owned[1]!, 'f32', [n]);
  const keys = asCuda(kPre, deviceOf(ctx), op);
  const result = { codes, n2, dispose: () => owned.splice(0).forEach((b) => b.dispose()) };
  if (n === 0) return result;

  const chunk = encodeChunkTokens(n, G, D);
  const scratch: CudaTensor[] = [];
  const take = (shape: number[], dtype: 'f32' | 'i32'): CudaTensor => {
    const b = emptyTensor(ctx, shape, dtype);
    scratch.push(b);
    return b;
  };
  let temporary: DeviceKeyTables | undefined;
  try {
    const tables = t ?? (temporary = DeviceKeyTables.build(ctx, layer));
    const V = take([G, chunk, D], 'f32'); // PI rows, normalised, then the residual
    const rows = kPre.dtype === 'f32' ? undefined : take([chunk, width], 'f32');
    const badCount = bad ?? take([1], 'i32');
    if (!bad) zeroFill(ctx, badCount);
    // key_encode's per-block error sums, one slot per (r, g, block), for a report
    const errStride = k.encodeBlocks(chunk);
    const err = sums ? take([R, G, errStride], 'f32') : undefined;
    if (err) zeroFill(ctx, err);
    const vn = sums ? take([chunk], 'f32') : undefined;
    for (let n0 = 0; n0 < n; n0 += chunk) {
      const T = Math.min(chunk, n - n0);
      const src = keys.rows(n0, T);
      const x = rows ? rows.rows(0, T) : src;
      if (rows) cast(ctx, x, src);
      const n2Chunk = n2.rows(n0, T);
      const Vc = V.view(0, [G, T, D]); // [G, T, D]: the chunk's rows, as key_prepare lays them out for N = T
      k.prepareKeys(ctx, x, undefined, Vc, n2Chunk, badCount, 0);
      if (sums && vn) addPower(ctx, sums.power, Vc, n2Chunk, vn.rows(0, T));
      k.encodeStages(ctx, Vc, n2Chunk, tables.all, { codes, from: n0 }, err && { sums: err, stride: errStride });
    }
    if (sums && err) addErrors(ctx, sums.error, err, R * G, errStride);
  } catch (e) {
    result.dispose();
    throw e;
  } finally {
    scratch.forEach((b) => b.dispose());
    temporary?.dispose();
  }
  return result;
}

/** power[g] += Σ_t n2_t·‖V_{g,t}‖² over the chunk's tokens (V normalised: ‖V_{g,t}‖²·n2_t = ‖k_{t,g}‖²). */
function addPower(ctx: CudaContextLike, power: Float64Array, V: CudaTensor, n2: CudaTensor, vn: CudaTensor): void {
  const norms = downloadFrom(ctx, n2, new Float32Array(n2.numel));
  const host = new Float32Array(vn.numel);
  for (let g = 0; g < power.length; g++) {
    k.sqnormRows(ctx, V.at(g), vn);
    downloadFrom(ctx, vn, host);
    for (let t = 0; t < host.length; t++) power[g] += norms[t]! * host[t]!;
  }
}

/** error[i] += Σ_b err[i, b] over the blocks of key_encode (in block order). */
function addErrors(ctx: CudaContextLike, error: Float64Array, err: CudaTensor, units: number, blocks: number): void {
  const host = downloadFrom(ctx, err, new Float32Array(units * blocks));
  for (let i = 0; i < units; i++) {
    let s = 0;
    for (let b = 0; b < blocks; b++) s += host[i * blocks + b]!;
    error[i] += s;
  }
}

/**
 * Per-stage errors of keys [N, G·D_h] (HF) under a codebook, from the GPU encoder: for train-key's report on large
 * held-out sets and for tests against the CPU encoder. Optionally the codes [R, G, N]. Streams the rows through the
 * GPU in chunks (device memory stays bounded); NaN or infinite keys are a CommvqError.
 *
 *   const { error, power } = gpuStageErrors(ctx, codebook, heldOutRows);
 */
export function gpuStageErrors(ctx: CudaContext, cb: LayerKeyCodebook, rows: Float32Array, codesOut?: Int32Array): StageErrors {
  const { residuals: R, groups: G, pairs: P, halfSize } = cb.shape;
  if (halfSize !== 64) throw new Error(`GPU key encoder: N_h must be 64, not ${halfSize}`);
  const D = 2 * P;
  const width = G * D;
  const N = rows.length / width;
  const sums: StageSums = { error: new Float64Array(R * G), power: new Float64Array(G) };
  const chunk = encodeChunkTokens(N, G, D);
  const theta = emptyTensor(ctx, [R, G, 128 * P], 'f32');
  const x = emptyTensor(ctx, [chunk, width], 'f32');
  const codes = emptyTensor(ctx, [R, G, chunk], 'i32');
  const n2 = emptyTensor(ctx, [chunk], 'f32');
  const bad = emptyTensor(ctx, [1], 'i32');
  let tables: DeviceKeyTables | undefined;
  try {
    uploadTo(ctx, theta, cb.theta);
    zeroFill(ctx, bad);
    const layer = { theta, residuals: R, groups: G, headDim: D };
    tables = DeviceKeyTables.build(ctx, layer);
    const host = new Int32Array(R * G * chunk);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const T = Math.min(chunk, N - n0);
      uploadTo(ctx, x.rows(0, T), rows.subarray(n0 * width, (n0 + T) * width));
      const out = { codes: codes.view(0, [R, G, T]), n2: n2.rows(0, T) };
      encodeKeysOnDevice(ctx, { ...layer, tables }, x.rows(0, T), { out, bad, sums });
      if (!codesOut) continue;
      downloadFrom(ctx, out.codes, host.subarray(0, R * G * T));
      for (let i = 0; i < R * G; i++) codesOut.set(host.subarray(i * T, (i + 1) * T), i * N + n0);
    }
    const count = downloadFrom(ctx, bad, new Int32Array(1))[0]!;
    if (count > 0) throw new CommvqError(`keys: ${count} tokens hold NaN or infinite values`, 'collect the keys again; the model produced non-finite activations');
    return { tokens: N, power: sums.power, error: sums.error };
  } finally {
    ctx.synchronize();
    tables?.dispose();
    [theta, x, codes, n2, bad].forEach((b) => b.dispose());
  }
}
