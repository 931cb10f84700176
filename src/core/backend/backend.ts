import type { DType, HostArray } from '../tensor/dtype.js';
import type { Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * The operations a transformer forward pass needs, implemented once per device. The CPU backend (TypeScript, f32
 * accumulation) is the numerical reference; the CUDA backend is tested op by op against it.
 *
 * Shape letters: T tokens, H_q query heads, H_kv key/value heads, D_h head dim, hidden model width, V vocab.
 * Activations are 2-D [rows, features], row-major. Weight matrices use the Hugging Face layout [out, in].
 * Every op returns a new tensor owned by the caller, in the backend's `activationDType` unless it says otherwise.
 */
export interface Backend {
  /** `cpu`, `cuda:0`, ... */
  readonly device: string;
  /** The dtype ops produce for activations and that dense KV caches store: f32 on the CPU, bf16 on the GPU. */
  readonly activationDType: DType;

  // ---- memory --------------------------------------------------------------------------------------------------
  /** A tensor holding `values` (numbers, rounded to `dtype`). */
  fromArray(values: ArrayLike<number>, shape: Shape, dtype: DType): Tensor;
  /** A tensor holding raw little-endian element bytes of `dtype` (e.g. a safetensors payload). */
  fromBytes(bytes: Uint8Array, shape: Shape, dtype: DType): Tensor;
  /** A zero-filled tensor. */
  zeros(shape: Shape, dtype: DType): Tensor;
  /** The values as f32 (float dtypes) or as their integer values (integer dtypes). */
  toFloat32(t: Tensor): Float32Array;
  /** The raw host copy in the tensor's own dtype (bf16 as bits). */
  toHost(t: Tensor): HostArray;
  /** Overwrites `dst` with host `values` (rounded to its dtype), in stream order: how graph inputs are updated. */
  upload(dst: Tensor, values: ArrayLike<number>): void;
  /**
   * Host memory the device copies into at full speed (pinned on a GPU), for streaming large results to disk; the
   * caller disposes it. Copies into it are enqueued with `downloadAsync` and complete at `synchronize`.
   */
  allocStaging(bytes: number): HostStaging;
  /** Enqueues a copy of `t`'s raw bytes into `dst` (a view into a HostStaging); valid after `synchronize()`. */
  downloadAsync(t: Tensor, dst: Uint8Array): void;
  /** Waits until all enqueued work and copies are done. */
  synchronize(): void;
  /** Copies `src` [n, F] into rows [row, row + n) of `dst` [R, F] (same dtype, or a float cast). */
  writeRows(dst: Tensor, row: number, src: Tensor): void;
  /**
   * dst[rows[i]] = src[i] for src [n, F] and rows i32 [n] on the device: a row write whose destination is read at
   * run time (a KV-cache append inside a replayed CUDA graph). Float casts as in writeRows.
   */
  scatterRows(dst: Tensor, rows: Tensor, src: Tensor): void;
  /** Rows [start, end) of x [R, F] as a new tensor. */
  sliceRows(x: Tensor, start: number, end: number): Tensor;
  /** Bytes currently allocated by this backend and the most ever allocated at once. */
  memory(): { bytesInUse: number; peakBytes: number };
  /** A tensor of seeded random values (streams differ between backends: same seed, different numbers). */
  randomTensor(shape: Shape, dtype: 'f32' | 'bf16', options: RandomOptions): Tensor;
  /**
   * Records the device work `fn` enqueues into a graph that replays it with one call (backends that can: CUDA).
   * Inside `fn` every op input must already be on the device; the tensors `fn` returns are rewritten by each replay.
   */
  captureGraph?<T>(fn: () => T): { graph: ReplayableGraph; result: T };

  // ---- ops -----------------------------------------------------------------------------------------------------
  /** table [V, hidden], ids i32 [T] (checked against V by the caller) → [T, hidden]. */
  embedding(table: Tensor, ids: Tensor): Tensor;
  /** x [T, F], weight [F] → x·rsqrt(mean(x²)+eps)·weight, statistics in f32. */
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  /** x [T, in], weight [out, in], bias [out]? → x·Wᵀ + b [T, out], f32 accumulation. */
  linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor;
  /** Elementwise a + b, same shapes. */
  add(a: Tensor, b: Tensor): Tensor;
  /** silu(gate)·up, same shapes. */
  swiglu(gate: Tensor, up: Tensor): Tensor;
  /**
   * Rotary embedding, rotate-half convention: x [T, heads·D_h]; row t is at absolute position `positions[t]`
   * (i32 [T]). Channel c < D_h/2 of each head pairs with c + D_h/2; angle = f32(position · invFreq[c]).
   */
  rope(x: Tensor, positions: Tensor, rope: RopeTable): Tensor;
  /**
   * Causal grouped-query attention. q [Tq, H_q·D_h]; k, v [≥kvLength, H_kv·D_h] (only the first kvLength rows are
   * read). Query row i sits at absolute position qStart + i and sees keys 0..qStart+i. Scale 1/√D_h, softmax in f32.
   * With `lengths` (i32 [2] on the device: {qStart, kvLength}) the lengths are read at run time, so a captured graph
   * stays right as the cache grows; `shape.maxKvLength` then bounds them. → [Tq, H_q·D_h].
   */
  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape, lengths?: Tensor): Tensor;
  /** Index of the largest value of each row of x [R, F] (first one on ties). */
  argmaxRows(x: Tensor): Int32Array;
  /** x converted to `dtype`. */
  cast(x: Tensor, dtype: DType): Tensor;
}

/** RoPE frequencies for one model: see `model/rope.ts`. */
export interface RopeTable {
  /** inverse frequencies, D_h/2 values, already scaled (llama3 etc.), f32. */
  readonly invFreq: Float32Array;
  readonly headDim: number;
  /** multiplies cos and sin (1 for default and llama3 RoPE) */
  readonly attentionScaling: number;
}

export interface AttentionShape {
  readonly queryHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** absolute position of query row 0 */
  readonly qStart: number;
  /** number of valid key/value rows */
  readonly kvLength: number;
  /** with device-side lengths: the largest kvLength they will hold (default kvLength) */
  readonly maxKvLength?: number;
}

export interface RandomOptions {
  readonly seed: number;
  /** default 'normal' */
  readonly distribution?: 'uniform' | 'normal';
  /** uniform range, default [0, 1) */
  readonly low?: number;
  readonly high?: number;
  /** normal parameters, default 0 and 1 */
  readonly mean?: number;
  readonly std?: number;
}

/** Host memory owned by a backend (see Backend.allocStaging). */
export interface HostStaging {
  readonly bytes: Uint8Array;
  dispose(): void;
}

/** A recorded graph of device work (see Backend.captureGraph). */
export interface ReplayableGraph {
  replay(): void;
  dispose(): void;
}
