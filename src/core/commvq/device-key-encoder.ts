import type { CudaContext } from '../backend/cuda/context.js';
import { cast, type FloatDType } from '../backend/cuda/launchers.js';
import type { CudaContextLike, DeviceBlock } from '../backend/cuda/kernels.js';
import { CommvqError } from '../errors.js';
import * as k from '../keys/gpu/key-launchers.js';

/**
 * Greedy residual key encoding on the GPU (spec §6.4), equal to `encodeKeys` (src/core/keys/encoder.ts) up to f32
 * near-ties: per-token norm over all G·D_h channels and the HF → PI permutation (kernels/key_prepare.cu), then per
 * group g and stage r the structured nearest centre and the residual update in place (key_assign in
 * kernels/key_estep.cu, with the θ tables of key_stage_tables in kernels/key_mstep.cu). Keys stay on the device:
 * this is the encoder of the device-resident CommVQ cache; `launchPackKeys` (cuda-cache-kernels.ts) then stores
 * the result.
 *
 * Ownership: `encodeKeysOnDevice` returns a `DeviceEncodedKeys`; call its `dispose()` when the work reading it is
 * queued. It frees the codes and n2 buffers only when it allocated them (no `out` given): buffers passed in `out`
 * stay the caller's. A `DeviceKeyTables` passed in `layer.tables` stays the caller's too; without one, a temporary
 * one is built and freed per call. All scratch is freed before the function returns (work stays queued on the
 * stream; nothing synchronizes).
 */

/** What the encoder needs of the context: launches, allocations, device copies. `CudaContext` is one. */
export type KeyEncoderContext = CudaContextLike & Pick<CudaContext, 'copy' | 'memset'>;

/** One layer's key codebook on the device. */
export interface DeviceKeyLayer {
  /** θ f32 [R, G, 2·64, D_h/2] (LayerKeyCodebook.theta uploaded as is) */
  readonly theta: bigint;
  /** R */
  readonly residuals: number;
  /** G = H_kv */
  readonly groups: number;
  /** D_h: 64 or 128 */
  readonly headDim: number;
  /** the θ handles of key_assign built once (DeviceKeyTables.build); built per call when absent */
  readonly tables?: DeviceKeyTables;
}

/** Pre-RoPE keys on the device: [n, G·D_h], HF layout, contiguous. A CudaTensor fits. */
export interface DeviceKeyRows {
  readonly ptr: bigint;
  readonly dtype: string;
}

/** Output buffers: codes i32 [R, G, n] (the layout of encodeKeys), n2 f32 [n] = squared token norms. */
export interface DeviceKeyCodes {
  readonly codes: bigint;
  readonly n2: bigint;
}

export interface DeviceEncodedKeys extends DeviceKeyCodes {
  readonly tokens: number;
  /** Frees the buffers this call allocated (none when `out` was given). */
  dispose(): void;
}

export interface EncodeKeysOptions {
  /** where to write codes and n2 (else allocated and owned by the result) */
  readonly out?: DeviceKeyCodes;
  /** i32 [1]: incremented once per token holding NaN or Inf (such a token gets n2 = 0, codes 0: it decodes to 0) */
  readonly bad?: bigint;
}

/** Scratch bytes of one chunk's normalised PI rows (and of the f32 copy of bf16 keys): bounds memory at n = 100K+. */
const CHUNK_BYTES = 64 << 20;
const ASSIGN_TOKENS_PER_BLOCK = 64; // key_assign: 32 warps × 2 tokens per pass

/** Bytes of one θ handle: θ [128, P], nz [64], Q [4096] f32 (key-launchers.ts thetaFloats). */
const handleBytes = (headDim: number): number => k.thetaFloats(headDim / 2) * 4;

/**
 * The θ handles of every (r, g) of one layer as key_assign reads them (θ_{r,g} followed by its data-free tables):
 * R·G·(128·P + 4160) floats, e.g. 4.3 MB for R = 11, G = 8, D_h = 128. Keep one per layer to skip rebuilding them
 * (2·R·G launches) on every encode, or let `encodeKeysOnDevice` build a temporary one. One owner; `dispose()` frees.
 *
 *   const tables = DeviceKeyTables.build(ctx, { theta, residuals: 11, groups: 8, headDim: 128 });
 *   encodeKeysOnDevice(ctx, { theta, residuals: 11, groups: 8, headDim: 128, tables }, kPre, 128).dispose();
 *   tables.dispose();
 */
export class DeviceKeyTables {
  private block: DeviceBlock | null;

  private constructor(
    block: DeviceBlock,
    readonly residuals: number,
    readonly groups: number,
    readonly headDim: number,
  ) {
    this.block = block;
  }

  static build(ctx: KeyEncoderContext, layer: Omit<DeviceKeyLayer, 'tables'>): DeviceKeyTables {
    checkLayer(layer);
    const { residuals: R, groups: G, headDim: D } = layer;
    const stageBytes = 128 * (D / 2) * 4;
    const tables = new DeviceKeyTables(ctx.alloc(R * G * handleBytes(D)), R, G, D);
    for (let r = 0; r < R; r++) {
      for (let g = 0; g < G; g++) {
        const handle = tables.at(r, g);
        ctx.copy(handle, layer.theta + BigInt((r * G + g) * stageBytes), stageBytes);
        k.stageTables(ctx, handle, D / 2);
      }
    }
    return tables;
  }

  /** Device address of the handle of stage r, group g. */
  at(r: number, g: number): bigint {
    if (!this.block) throw new CommvqError('device key tables used after dispose()');
    return this.block.ptr + BigInt((r * this.groups + g) * handleBytes(this.headDim));
  }

  dispose(): void {
    this.block?.free();
    this.block = null;
  }
}

function checkLayer(layer: Omit<DeviceKeyLayer, 'tables'>): void {
  const int = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new CommvqError(`device key encoder: ${name} must be a positive integer, got ${v}`);
  };
  int('residuals', layer.residuals);
  int('groups', layer.groups);
  if (layer.headDim !== 64 && layer.headDim !== 128) {
    throw new CommvqError(`device key encoder: head_dim ${layer.headDim} is not supported`, 'head_dim 64 and 128 are');
  }
  if (layer.theta === 0n) throw new CommvqError('device key encoder: theta is a null pointer');
  if (layer.theta % 16n !== 0n) throw new CommvqError('device key encoder: theta is not 16-byte aligned');
}

const ROW_DTYPES: Readonly<Record<string, FloatDType>> = { f32: 'f32', bf16: 'bf16', f16: 'f16' };

/** Tokens per chunk: whole passes of key_assign, scratch ≤ CHUNK_BYTES. */
export function encodeChunkTokens(n: number, groups: number, headDim: number): number {
  const fit = Math.floor(CHUNK_BYTES / (groups * headDim * 4) / ASSIGN_TOKENS_PER_BLOCK) * ASSIGN_TOKENS_PER_BLOCK;
  return Math.max(1, Math.min(n, Math.max(ASSIGN_TOKENS_PER_BLOCK, fit)));
}

/**
 * Encodes n tokens of pre-RoPE keys kPre [n, G·D_h] (f32, bf16 or f16, HF layout) under one layer's θ, enqueued on
 * the context's stream: codes i32 [R, G, n] and n2 f32 [n] (n_t = √n2_t), as `encodeKeys` computes them.
 *
 *   const enc = encodeKeysOnDevice(ctx, { theta, residuals: 11, groups: 8, headDim: 128 }, kPre, 128);
 *   launchPackKeys(ctx, { codes: enc.codes, n2: enc.n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, tokens: 128, rowStart, capacity });
 *   enc.dispose();
 */
export function encodeKeysOnDevice(ctx: KeyEncoderContext, layer: DeviceKeyLayer, kPre: DeviceKeyRows, n: number, options: EncodeKeysOptions = {}): DeviceEncodedKeys {
  checkLayer(layer);
  if (!Number.isInteger(n) || n < 0) throw new CommvqError(`device key encoder: n must be an integer ≥ 0, got ${n}`);
  const dtype = ROW_DTYPES[kPre.dtype];
  if (!dtype) throw new CommvqError(`device key encoder: keys of dtype ${kPre.dtype} are not supported`, 'pass f32, bf16 or f16 keys');
  if (kPre.ptr === 0n) throw new CommvqError('device key encoder: kPre is a null pointer');
  const t = layer.tables;
  if (t && (t.residuals !== layer.residuals || t.groups !== layer.groups || t.headDim !== layer.headDim)) {
    throw new CommvqError(`device key encoder: tables of [R ${t.residuals}, G ${t.groups}, D_h ${t.headDim}] do not fit the layer [R ${layer.residuals}, G ${layer.groups}, D_h ${layer.headDim}]`);
  }
  const { out, bad } = options;
  if (out && (out.codes === 0n || out.n2 === 0n)) throw new CommvqError('device key encoder: out.codes or out.n2 is a null pointer');
  if (out && (out.codes % 4n !== 0n || out.n2 % 4n !== 0n)) throw new CommvqError('device key encoder: out.codes and out.n2 must be 4-byte aligned');
  const { residuals: R, groups: G, headDim: D } = layer;
  const owned = out ? [] : [ctx.alloc(Math.max(4, R * G * n * 4)), ctx.alloc(Math.max(4, n * 4))];
  const codes = out?.codes ?? owned[0]!.ptr;
  const n2 = out?.n2 ?? owned[1]!.ptr;
  const result: DeviceEncodedKeys = { tokens: n, codes, n2, dispose: () => owned.splice(0).forEach((b) => b.free()) };
  if (n === 0) return result;

  const width = G * D;
  const chunk = encodeChunkTokens(n, G, D);
  const scratch: DeviceBlock[] = [];
  const take = (bytes: number): bigint => {
    const b = ctx.alloc(bytes);
    scratch.push(b);
    return b.ptr;
  };
  let temporary: DeviceKeyTables | undefined;
  try {
    const tables = t ?? (temporary = DeviceKeyTables.build(ctx, layer));
    const V = take(G * chunk * D * 4); // [G, chunk, D] f32 PI, normalised, then the residual
    const rows = dtype === 'f32' ? 0n : take(chunk * width * 4); // [chunk, G·D] f32
    const badPtr = bad ?? take(4);
    if (!bad) ctx.memset(badPtr, 0, 4);
    const blocksMax = k.estepBlocks(ctx);
    const err = take(blocksMax * 4); // key_assign's per-block error sums, unused here
    ctx.memset(err, 0, blocksMax * 4);
    const elem = dtype === 'f32' ? 4 : 2;
    for (let n0 = 0; n0 < n; n0 += chunk) {
      const T = Math.min(chunk, n - n0);
      const src = kPre.ptr + BigInt(n0 * width * elem);
      if (dtype !== 'f32') cast(ctx, rows, src, T * width, dtype, 'f32');
      const n2At = n2 + BigInt(n0 * 4);
      k.prepareKeys(ctx, dtype === 'f32' ? src : rows, 0n, V, n2At, badPtr, 0, T, T, G, D);
      const blocks = Math.min(blocksMax, Math.ceil(T / ASSIGN_TOKENS_PER_BLOCK));
      for (let g = 0; g < G; g++) {
        const Vg = V + BigInt(g * T * D * 4);
        for (let r = 0; r < R; r++) {
          k.assign(ctx, blocks, Vg, n2At, tables.at(r, g), T, codes + BigInt(((r * G + g) * n + n0) * 4), err, D);
        }
      }
    }
  } catch (e) {
    result.dispose();
    throw e;
  } finally {
    scratch.forEach((b) => b.free());
    temporary?.dispose();
  }
  return result;
}
