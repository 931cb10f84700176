import type { DType } from '../../tensor/dtype.js';
import { f32, i32, i64, ptr, type CudaContextLike } from './kernels.js';

/**
 * One launcher per kernel of `kernels/*.cu` (except attention): each owns its grid and block choice and takes device
 * addresses and sizes. Shapes and semantics are in each kernel's header comment.
 */

const MAX_GRID_STRIDE_BLOCKS = 65535 * 16;

/** Threads for a one-block-per-row kernel doing `work` items per row: a multiple of 32 in [32, 1024]. */
function rowThreads(work: number): number {
  return Math.min(1024, Math.max(32, Math.ceil(work / 32) * 32));
}

function gridStride(n: number): number {
  return Math.max(1, Math.min(MAX_GRID_STRIDE_BLOCKS, Math.ceil(n / 256)));
}

export function embedding(ctx: CudaContextLike, out: bigint, table: bigint, ids: bigint, T: number, V: number, hidden: number): void {
  ctx.launch(ctx.kernel('embedding', 'embedding_bf16'), [T, 1, 1], [256, 1, 1], 0, [ptr(out), ptr(table), ptr(ids), i32(V), i32(hidden)]);
}

export function rmsNorm(ctx: CudaContextLike, out: bigint, x: bigint, weight: bigint, rows: number, F: number, eps: number): void {
  const threads = rowThreads(F % 8 === 0 ? F / 8 : F);
  ctx.launch(ctx.kernel('rms_norm', 'rms_norm_bf16'), [rows, 1, 1], [threads, 1, 1], 0, [ptr(out), ptr(x), ptr(weight), i32(F), f32(eps)]);
}

export function rope(
  ctx: CudaContextLike,
  out: bigint,
  x: bigint,
  positions: bigint,
  invFreq: bigint,
  T: number,
  heads: number,
  headDim: number,
  scaling: number,
): void {
  const threads = Math.min(128, Math.max(32, Math.ceil(headDim / 2 / 32) * 32));
  ctx.launch(ctx.kernel('rope', 'rope_bf16'), [T, heads, 1], [threads, 1, 1], 0, [
    ptr(out), ptr(x), ptr(positions), ptr(invFreq), i32(heads), i32(headDim), f32(scaling),
  ]);
}

function elementwise8(ctx: CudaContextLike, module: string, name: string, out: bigint, a: bigint, b: bigint, n: number): void {
  ctx.launch(ctx.kernel(module, name), [Math.ceil(n / 2048), 1, 1], [256, 1, 1], 0, [ptr(out), ptr(a), ptr(b), i64(n)]);
}

export function swiglu(ctx: CudaContextLike, out: bigint, gate: bigint, up: bigint, n: number): void {
  elementwise8(ctx, 'swiglu', 'swiglu_bf16', out, gate, up, n);
}

export function add(ctx: CudaContextLike, out: bigint, a: bigint, b: bigint, n: number): void {
  elementwise8(ctx, 'add', 'add_bf16', out, a, b, n);
}

export function biasAdd(ctx: CudaContextLike, out: bigint, x: bigint, bias: bigint, rows: number, cols: number): void {
  const kernel = ctx.kernel('bias_add', 'bias_add_bf16');
  ctx.launch(kernel, [rows, Math.ceil(cols / 256), 1], [256, 1, 1], 0, [ptr(out), ptr(x), ptr(bias), i32(cols)]);
}

export type FloatDType = 'f32' | 'bf16' | 'f16';

export function cast(ctx: CudaContextLike, out: bigint, x: bigint, n: number, from: FloatDType, to: FloatDType): void {
  ctx.launch(ctx.kernel('cast', `cast_${from}_to_${to}`), [gridStride(n), 1, 1], [256, 1, 1], 0, [ptr(out), ptr(x), i64(n)]);
}

export function argmaxRows(ctx: CudaContextLike, out: bigint, x: bigint, rows: number, F: number, dtype: 'f32' | 'bf16'): void {
  ctx.launch(ctx.kernel('argmax', `argmax_rows_${dtype}`), [rows, 1, 1], [rowThreads(F), 1, 1], 0, [ptr(out), ptr(x), i32(F)]);
}

export function softmaxRows(
  ctx: CudaContextLike,
  out: bigint,
  x: bigint,
  rows: number,
  F: number,
  dtype: 'f32' | 'bf16',
  invTemperature: number,
): void {
  ctx.launch(ctx.kernel('softmax', `softmax_rows_${dtype}`), [rows, 1, 1], [rowThreads(F), 1, 1], 0, [
    ptr(out), ptr(x), i32(F), f32(invTemperature),
  ]);
}

/** uniform: a = low, b = high; normal: a = mean, b = std. */
export function fillRandom(
  ctx: CudaContextLike,
  out: bigint,
  n: number,
  dtype: 'f32' | 'bf16',
  distribution: 'uniform' | 'normal',
  seed: bigint,
  a: number,
  b: number,
): void {
  ctx.launch(ctx.kernel('fill_random', `fill_${distribution}_${dtype}`), [gridStride(n), 1, 1], [256, 1, 1], 0, [
    ptr(out), i64(n), i64(seed), f32(a), f32(b),
  ]);
}

export function gemmFallback(ctx: CudaContextLike, y: bigint, x: bigint, w: bigint, T: number, inF: number, outF: number): void {
  ctx.launch(ctx.kernel('gemm_fallback', 'gemm_bf16_fallback'), [Math.ceil(outF / 16), Math.ceil(T / 16), 1], [16, 16, 1], 0, [
    ptr(y), ptr(x), ptr(w), i32(T), i32(inF), i32(outF),
  ]);
}

export function isFloatDType(d: DType): d is FloatDType {
  return d === 'f32' || d === 'bf16' || d === 'f16';
}

export function scatterRows(ctx: CudaContextLike, dst: bigint, src: bigint, rows: bigint, n: number, R: number, rowBytes: number): void {
  ctx.launch(ctx.kernel('scatter_rows', 'scatter_rows'), [n, 1, 1], [256, 1, 1], 0, [ptr(dst), ptr(src), ptr(rows), i32(R), i64(rowBytes)]);
}
