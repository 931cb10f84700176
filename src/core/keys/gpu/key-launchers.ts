import { f32, i32, ptr, type CudaContextLike } from '../../backend/cuda/kernels.js';

/**
 * Launchers of the key-codebook kernels (kernels/key_*.cu): each owns its grid, block and shared-memory size.
 * Pointers are device addresses; 0n passes a null pointer. Shapes are in each kernel's header comment.
 */

/** Centres per stage and group (N_h² with N_h = 64): the kernels are written for this size. */
export const GPU_CENTRES = 4096;
/** Threads of the E-step and assign kernels (32 warps, two tokens per warp at a time). */
const ESTEP_THREADS = 1024;
const WARPS = 32;
const TB = 2;

/** Floats of one θ handle on the device: θ [128, P], then nz [64] and Q [4096]. */
export function thetaFloats(pairs: number): number {
  return 128 * pairs + 64 + GPU_CENTRES;
}

/** Floats of one block's statistics: w [4096], S [128, D], hard [1], padded to 16 bytes. */
export function statsStride(headDim: number): number {
  return Math.ceil((GPU_CENTRES + 128 * headDim + 1) / 4) * 4;
}

function tablesBytes(headDim: number): number {
  return (headDim / 2) * 64 * 8 + 64 * 4 + GPU_CENTRES * 4;
}

function warpBytes(headDim: number): number {
  return WARPS * TB * headDim * 4 + WARPS * 64 * TB * 4 + WARPS * 4;
}

/** Dynamic shared memory of key_estep_soft (θ tables, w and S accumulators, per-warp buffers). */
export function softSharedBytes(headDim: number): number {
  return tablesBytes(headDim) + GPU_CENTRES * 4 + 128 * headDim * 4 + warpBytes(headDim);
}

export function assignSharedBytes(headDim: number): number {
  return tablesBytes(headDim) + warpBytes(headDim);
}

/** Blocks of the E-step and assign kernels: one per SM (each holds its own statistics in shared memory). */
export function estepBlocks(ctx: CudaContextLike): number {
  return ctx.info.smCount;
}

export function prepareKeys(ctx: CudaContextLike, x: bigint, scale: bigint, v: bigint, n2: bigint, bad: bigint, n0: number, T: number, N: number, G: number, D: number): void {
  ctx.launch(ctx.kernel('key_prepare', 'key_prepare'), [T, 1, 1], [256, 1, 1], 0, [
    ptr(x), ptr(scale), ptr(v), ptr(n2), ptr(bad), i32(n0), i32(N), i32(G), i32(D),
  ]);
}

export function sqnormRows(ctx: CudaContextLike, V: bigint, vn: bigint, N: number, D: number): void {
  ctx.launch(ctx.kernel('key_gemm', 'key_sqnorm_rows'), [Math.ceil(N / 8), 1, 1], [256, 1, 1], 0, [ptr(V), ptr(vn), i32(N), i32(D)]);
}

export function distGemm(ctx: CudaContextLike, V: bigint, idx: bigint, vn: bigint, d2: bigint, n0: number, rows: number, K: number, D: number): void {
  ctx.launch(ctx.kernel('key_gemm', 'key_dist_gemm'), [K / 128, Math.ceil(rows / 128), 1], [256, 1, 1], 0, [
    ptr(V), ptr(idx), ptr(vn), ptr(d2), i32(n0), i32(rows), i32(K), i32(D),
  ]);
}

export function estepSoft(
  ctx: CudaContextLike, blocks: number, V: bigint, n2: bigint, theta: bigint, d2: bigint,
  n0: number, rows: number, invTau: number, partial: bigint, D: number,
): void {
  ctx.launch(ctx.kernel('key_estep', `key_estep_soft_d${D}`), [blocks, 1, 1], [ESTEP_THREADS, 1, 1], softSharedBytes(D), [
    ptr(V), ptr(n2), ptr(theta), ptr(d2), i32(n0), i32(rows), f32(invTau), ptr(partial), i32(statsStride(D)),
  ]);
}

export function assign(ctx: CudaContextLike, blocks: number, V: bigint, n2: bigint, theta: bigint, rows: number, codes: bigint, err: bigint, D: number): void {
  ctx.launch(ctx.kernel('key_estep', `key_assign_d${D}`), [blocks, 1, 1], [ESTEP_THREADS, 1, 1], assignSharedBytes(D), [
    ptr(V), ptr(n2), ptr(theta), i32(rows), ptr(codes), ptr(err),
  ]);
}

export function reduce(ctx: CudaContextLike, partial: bigint, out: bigint, blocks: number, stride: number): void {
  ctx.launch(ctx.kernel('key_mstep', 'key_reduce'), [Math.ceil(stride / 256), 1, 1], [256, 1, 1], 0, [
    ptr(partial), ptr(out), i32(blocks), i32(stride),
  ]);
}

export function solveTheta(ctx: CudaContextLike, stats: bigint, theta: bigint, D: number): void {
  const P = D / 2;
  ctx.launch(ctx.kernel('key_mstep', 'key_solve_theta'), [1, 1, 1], [256, 1, 1], (2 * 64 * 65 + 2 * 64 * P) * 8, [ptr(stats), ptr(theta), i32(D)]);
}

export function stageTables(ctx: CudaContextLike, theta: bigint, P: number): void {
  ctx.launch(ctx.kernel('key_mstep', 'key_stage_tables'), [GPU_CENTRES / 256, 1, 1], [256, 1, 1], 0, [ptr(theta), i32(P)]);
}
