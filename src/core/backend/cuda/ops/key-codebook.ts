import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, ptr, type CudaContextLike } from '../kernels.js';
import { expectElements, tensorArg } from './tensor-args.js';

/**
 * Launchers of the key-codebook kernels (kernels/key_prepare.cu, key_gemm.cu, key_estep.cu, key_mstep.cu,
 * key_encode.cu): each owns
 * its grid, block and shared-memory size, takes f32 tensors (i32 for indices, codes and counters), and checks the
 * sizes it can see. Shapes are in each kernel's header comment; the E-step kernels' sizes (centres, warps, tokens per
 * warp) come from key_estep.cu, the M-step's from key_mstep.cu.
 *
 * A θ handle is an f32 [thetaFloats(P)] tensor: θ [128, P], then the data-free tables nz [64] and Q [4096] that
 * `stageTables` writes after it and the E-step and assign kernels read.
 *
 *   stageTables(ctx, handle, 128);
 *   assign(ctx, estepBlocks(ctx), V, n2, handle, codes, err);   // V [N, 128] PI rows, updated to the residual
 */

const ESTEP = kernelConstants('key_estep', ['NH', 'KC', 'TB', 'WARPS', 'THREADS']);
const MSTEP = kernelConstants('key_mstep', ['NH', 'KC', 'LD']);
const ENCODE = kernelConstants('key_encode', ['NH', 'KC', 'MAX_WARPS', 'WARP_TOKENS', 'RMAX', 'THETA_PAD', 'ALD', 'BLD']);
const GEMM = kernelConstants('key_gemm', ['BM', 'BN', 'GEMM_THREADS', 'SQNORM_ROWS']);

/** Threads of the kernels that loop over blockDim (key_prepare, key_reduce, key_solve_theta, key_stage_tables). */
const THREADS = 256;

/** Centres per stage and group (N_h² with N_h = 64): the kernels are written for this size. */
export function keyCentres(): number {
  return ESTEP.KC;
}

/** Floats of one θ handle on the device: θ [2·N_h, P], then nz [N_h] and Q [N_h²]. */
export function thetaFloats(pairs: number): number {
  return 2 * MSTEP.NH * pairs + MSTEP.NH + MSTEP.KC;
}

/** Floats of one block's statistics: w [4096], S [128, D], hard [1], padded to 16 bytes. */
export function statsStride(headDim: number): number {
  return Math.ceil((ESTEP.KC + 2 * ESTEP.NH * headDim + 1) / 4) * 4;
}

/** Index of `hard` (Σ n2·min distance) in a block's statistics. */
export function statsHardIndex(headDim: number): number {
  return ESTEP.KC + 2 * ESTEP.NH * headDim;
}

/** Shared memory of the θ tables both E-step kernels hold: (X, Y) pairs [P][N_h], nz [N_h], Q [N_h²]. */
function tablesBytes(headDim: number): number {
  return ((headDim / 2) * ESTEP.NH * 2 + ESTEP.NH + ESTEP.KC) * 4;
}

/** Shared memory of the per-warp buffers: TB token rows, α [N_h][TB], one partial sum. */
function warpBytes(headDim: number): number {
  const { WARPS, TB, NH } = ESTEP;
  return (WARPS * TB * headDim + WARPS * NH * TB + WARPS) * 4;
}

/** Dynamic shared memory of key_estep_soft (θ tables, w and S accumulators, per-warp buffers). */
export function softSharedBytes(headDim: number): number {
  return tablesBytes(headDim) + (ESTEP.KC + 2 * ESTEP.NH * headDim) * 4 + warpBytes(headDim);
}

export function assignSharedBytes(headDim: number): number {
  return tablesBytes(headDim) + warpBytes(headDim);
}

/** Blocks of the E-step and assign kernels: one per SM (each holds its own statistics in shared memory). */
export function estepBlocks(ctx: Pick<CudaContextLike, 'info'>): number {
  return ctx.info.smCount;
}

function headDimOf(op: string, D: number): void {
  if (D !== 64 && D !== 128) throw new CommvqError(`${op}: head_dim ${D} is not supported`, 'head_dim 64 and 128 are');
}

/**
 * Prepares rows n0 .. n0 + T of keys (spec §3.2): x f32 [T, G·D] (HF, pre-RoPE), times `scale` f32 [G·D] when given,
 * into v f32 [G, N, D] (PI, divided by the token norm) and n2 f32 [N]; `bad` i32 [1] counts rows holding NaN or Inf.
 */
export function prepareKeys(ctx: CudaContextLike, x: Tensor, scale: Tensor | undefined, v: Tensor, n2: Tensor, bad: Tensor, n0: number): void {
  const op = 'key_prepare';
  const vs = tensorArg(ctx, op, 'v', v, 'f32', [-1, -1, -1]);
  const [G, N, D] = vs.shape as [number, number, number];
  const xs = tensorArg(ctx, op, 'x', x, 'f32', [-1, G * D]);
  const T = xs.shape[0]!;
  if (!Number.isInteger(n0) || n0 < 0 || n0 + T > N) throw new CommvqError(`${op}: rows ${n0} + ${T} outside ${N}`);
  const ns = tensorArg(ctx, op, 'n2', n2, 'f32', [N]);
  const sc = scale === undefined ? undefined : tensorArg(ctx, op, 'scale', scale, 'f32', [G * D]);
  const b = tensorArg(ctx, op, 'bad', bad, 'i32');
  expectElements(op, 'bad', b, 1);
  ctx.launch(ctx.kernel('key_prepare', 'key_prepare'), [T, 1, 1], [THREADS, 1, 1], 0, [
    ptr(xs.ptr), ptr(sc?.ptr ?? 0n), ptr(vs.ptr), ptr(ns.ptr), ptr(b.ptr), i32(n0), i32(N), i32(G), i32(D),
  ]);
}

/** vn f32 [≥N] ← ‖V_n‖² of V f32 [N, D]. */
export function sqnormRows(ctx: CudaContextLike, V: Tensor, vn: Tensor): void {
  const vs = tensorArg(ctx, 'key_sqnorm_rows', 'V', V, 'f32', [-1, -1]);
  const [N, D] = vs.shape as [number, number];
  const out = tensorArg(ctx, 'key_sqnorm_rows', 'vn', vn, 'f32');
  expectElements('key_sqnorm_rows', 'vn', out, N);
  const rows = GEMM.SQNORM_ROWS;
  ctx.launch(ctx.kernel('key_gemm', 'key_sqnorm_rows'), [Math.ceil(N / rows), 1, 1], [32 * rows, 1, 1], 0, [ptr(vs.ptr), ptr(out.ptr), i32(N), i32(D)]);
}

/**
 * d2 f32 [rows, K] ← squared distances of rows n0 .. n0 + rows of V f32 [N, D] to the centre rows idx i32 [K] of V
 * (K a multiple of the tile), with vn f32 [N] = ‖V_n‖².
 */
export function distGemm(ctx: CudaContextLike, V: Tensor, idx: Tensor, vn: Tensor, d2: Tensor, n0: number, rows: number): void {
  const op = 'key_dist_gemm';
  const vs = tensorArg(ctx, op, 'V', V, 'f32', [-1, -1]);
  const [N, D] = vs.shape as [number, number];
  const ix = tensorArg(ctx, op, 'idx', idx, 'i32');
  const K = ix.numel;
  if (K % GEMM.BN !== 0) throw new CommvqError(`${op}: ${K} centres are not a multiple of ${GEMM.BN}`);
  if (n0 + rows > N) throw new CommvqError(`${op}: rows ${n0} + ${rows} outside ${N}`);
  const norms = tensorArg(ctx, op, 'vn', vn, 'f32');
  expectElements(op, 'vn', norms, N);
  const out = tensorArg(ctx, op, 'd2', d2, 'f32');
  expectElements(op, 'd2', out, rows * K);
  ctx.launch(ctx.kernel('key_gemm', 'key_dist_gemm'), [K / GEMM.BN, Math.ceil(rows / GEMM.BM), 1], [GEMM.GEMM_THREADS, 1, 1], 0, [
    ptr(vs.ptr), ptr(ix.ptr), ptr(norms.ptr), ptr(out.ptr), i32(n0), i32(rows), i32(K), i32(D),
  ]);
}

/**
 * The soft E-step of rows n0 .. n0 + rows of V f32 [N, D] (n2 f32 [N]), folded into per-block statistics partial
 * f32 [blocks, statsStride(D)] (added to): structured distances from the θ handle `theta`, or (the init step) the
 * explicit distances d2 f32 [rows, 4096] when `theta` is undefined.
 */
export function estepSoft(
  ctx: CudaContextLike, blocks: number, V: Tensor, n2: Tensor, theta: Tensor | undefined, d2: Tensor | undefined,
  n0: number, rows: number, invTau: number, partial: Tensor,
): void {
  const op = 'key_estep_soft';
  const vs = tensorArg(ctx, op, 'V', V, 'f32', [-1, -1]);
  const [N, D] = vs.shape as [number, number];
  headDimOf(op, D);
  if (n0 + rows > N) throw new CommvqError(`${op}: rows ${n0} + ${rows} outside ${N}`);
  if ((theta === undefined) === (d2 === undefined)) throw new CommvqError(`${op}: give either θ tables or explicit distances`);
  const ns = tensorArg(ctx, op, 'n2', n2, 'f32', [N]);
  const th = theta === undefined ? undefined : tensorArg(ctx, op, 'theta', theta, 'f32', [thetaFloats(D / 2)]);
  const dd = d2 === undefined ? undefined : tensorArg(ctx, op, 'd2', d2, 'f32');
  if (dd) expectElements(op, 'd2', dd, rows * keyCentres());
  const stride = statsStride(D);
  const part = tensorArg(ctx, op, 'partial', partial, 'f32');
  expectElements(op, 'partial', part, blocks * stride);
  ctx.launch(ctx.kernel('key_estep', `key_estep_soft_d${D}`), [blocks, 1, 1], [ESTEP.THREADS, 1, 1], softSharedBytes(D), [
    ptr(vs.ptr), ptr(ns.ptr), ptr(th?.ptr ?? 0n), ptr(dd?.ptr ?? 0n), i32(n0), i32(rows), f32(invTau), ptr(part.ptr), i32(stride),
  ]);
}

/**
 * Hard nearest centre of every row of V f32 [rows, D] under the θ handle `theta`, V ← V − C[code] in place, codes i32
 * [rows] (when given), err f32 [≥blocks] += per block Σ n2·‖V‖² after the update (n2 f32 [rows]).
 */
export function assign(ctx: CudaContextLike, blocks: number, V: Tensor, n2: Tensor, theta: Tensor, codes: Tensor | undefined, err: Tensor): void {
  const op = 'key_assign';
  const vs = tensorArg(ctx, op, 'V', V, 'f32', [-1, -1]);
  const [rows, D] = vs.shape as [number, number];
  headDimOf(op, D);
  const ns = tensorArg(ctx, op, 'n2', n2, 'f32', [rows]);
  const th = tensorArg(ctx, op, 'theta', theta, 'f32', [thetaFloats(D / 2)]);
  const cs = codes === undefined ? undefined : tensorArg(ctx, op, 'codes', codes, 'i32', [rows]);
  const es = tensorArg(ctx, op, 'err', err, 'f32');
  expectElements(op, 'err', es, blocks);
  ctx.launch(ctx.kernel('key_estep', `key_assign_d${D}`), [blocks, 1, 1], [ESTEP.THREADS, 1, 1], assignSharedBytes(D), [
    ptr(vs.ptr), ptr(ns.ptr), ptr(th.ptr), i32(rows), ptr(cs?.ptr ?? 0n), ptr(es.ptr),
  ]);
}

/** out f32 [stride] ← Σ over blocks of partial f32 [blocks, stride] (f64 sums). */
export function reduce(ctx: CudaContextLike, partial: Tensor, out: Tensor, blocks: number, stride: number): void {
  const p = tensorArg(ctx, 'key_reduce', 'partial', partial, 'f32');
  expectElements('key_reduce', 'partial', p, blocks * stride);
  const o = tensorArg(ctx, 'key_reduce', 'out', out, 'f32');
  expectElements('key_reduce', 'out', o, stride);
  ctx.launch(ctx.kernel('key_mstep', 'key_reduce'), [Math.ceil(stride / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(p.ptr), ptr(o.ptr), i32(blocks), i32(stride),
  ]);
}

/** θ of the handle `theta` ← the M-step's solve of the statistics `stats` f32 [statsStride(D)]. */
export function solveTheta(ctx: CudaContextLike, stats: Tensor, theta: Tensor, headDim: number): void {
  headDimOf('key_solve_theta', headDim);
  const P = headDim / 2;
  const s = tensorArg(ctx, 'key_solve_theta', 'stats', stats, 'f32');
  expectElements('key_solve_theta', 'stats', s, statsStride(headDim));
  const th = tensorArg(ctx, 'key_solve_theta', 'theta', theta, 'f32', [thetaFloats(P)]);
  const { NH, LD } = MSTEP;
  ctx.launch(ctx.kernel('key_mstep', 'key_solve_theta'), [1, 1, 1], [THREADS, 1, 1], (2 * NH * LD + 2 * NH * P) * 8, [ptr(s.ptr), ptr(th.ptr), i32(headDim)]);
}

/** The data-free tables (nz, Q) after θ in the handle `theta` of P pairs. */
export function stageTables(ctx: CudaContextLike, theta: Tensor, P: number): void {
  const th = tensorArg(ctx, 'key_stage_tables', 'theta', theta, 'f32', [thetaFloats(P)]);
  ctx.launch(ctx.kernel('key_mstep', 'key_stage_tables'), [MSTEP.KC / THREADS, 1, 1], [THREADS, 1, 1], 0, [ptr(th.ptr), i32(P)]);
}

/** The θ handles of a whole layer in one launch: handles f32 [units, thetaFloats(P)] ← θ f32 [units, 128·P] and tables. */
export function layerTables(ctx: CudaContextLike, theta: Tensor, handles: Tensor, P: number): void {
  const op = 'key_layer_tables';
  const th = tensorArg(ctx, op, 'theta', theta, 'f32');
  const units = th.numel / (2 * MSTEP.NH * P);
  if (!Number.isInteger(units) || units < 1) throw new CommvqError(`${op}: theta of ${th.numel} elements is not whole stages of ${2 * MSTEP.NH * P}`);
  const hs = tensorArg(ctx, op, 'handles', handles, 'f32');
  expectElements(op, 'handles', hs, units * thetaFloats(P));
  ctx.launch(ctx.kernel('key_mstep', op), [MSTEP.KC / THREADS, units, 1], [THREADS, 1, 1], 0, [ptr(th.ptr), ptr(hs.ptr), i32(P)]);
}

/** Dynamic shared memory of key_encode: two stage buffers (θ [128][P + pad], nz, Q), then per warp α, β, error slots and codes. */
function encodeSharedBytes(headDim: number, warps: number): number {
  const { NH, KC, WARP_TOKENS, RMAX, THETA_PAD, ALD, BLD } = ENCODE;
  const stage = 2 * NH * (headDim / 2 + THETA_PAD) + NH + KC;
  return (2 * stage + warps * (NH * ALD + WARP_TOKENS * BLD + RMAX + WARP_TOKENS)) * 4;
}

/**
 * Warps per block of key_encode over n tokens of G groups: the most (MAX_WARPS) when that still gives every SM a
 * block, else half as many (short chunks, e.g. a 1024-row prefill chunk: 8 groups × 16 blocks of 4 warps).
 */
function encodeWarps(ctx: Pick<CudaContextLike, 'info'>, n: number, groups: number): number {
  const most = ENCODE.MAX_WARPS;
  return Math.ceil(n / (most * ENCODE.WARP_TOKENS)) * groups >= ctx.info.smCount ? most : most / 2;
}

/** The most blocks along the tokens one key_encode launch over n tokens takes (the slots its error sums need). */
export function encodeBlocks(n: number): number {
  return Math.ceil(n / ((ENCODE.MAX_WARPS / 2) * ENCODE.WARP_TOKENS));
}

/**
 * Every stage of every group of n tokens in one launch (kernels/key_encode.cu): V f32 [G, n, D] (key_prepare's
 * normalised PI rows, left as they are), n2 f32 [n], handles f32 [R, G, thetaFloats(D/2)] → columns [from, from + n) of
 * codes i32 [R, G, total]; with err f32 [R, G, stride], err[r, g, block] += Σ n2·‖residual after stage r‖² over the
 * block's tokens.
 */
export function encodeStages(ctx: CudaContextLike, V: Tensor, n2: Tensor, handles: Tensor, codes: { codes: Tensor; from: number }, err?: { sums: Tensor; stride: number }): void {
  const op = 'key_encode';
  const vs = tensorArg(ctx, op, 'V', V, 'f32', [-1, -1, -1]);
  const [G, n, D] = vs.shape as [number, number, number];
  headDimOf(op, D);
  const ns = tensorArg(ctx, op, 'n2', n2, 'f32', [n]);
  const hs = tensorArg(ctx, op, 'handles', handles, 'f32', [-1, G, thetaFloats(D / 2)]);
  const R = hs.shape[0]!;
  if (R > ENCODE.RMAX) throw new CommvqError(`${op}: ${R} stages are more than one launch runs (${ENCODE.RMAX})`);
  const cs = tensorArg(ctx, op, 'codes', codes.codes, 'i32', [R, G, -1]);
  const total = cs.shape[2]!;
  if (!(Number.isInteger(codes.from) && codes.from >= 0 && codes.from + n <= total)) throw new CommvqError(`${op}: columns [${codes.from}, ${codes.from + n}) are outside codes of ${total}`);
  const warps = encodeWarps(ctx, n, G);
  const blocks = Math.ceil(n / (warps * ENCODE.WARP_TOKENS));
  if (err && err.stride < blocks) throw new CommvqError(`${op}: error stride ${err.stride} is less than the ${blocks} blocks of ${n} tokens`);
  const es = err ? tensorArg(ctx, op, 'err', err.sums, 'f32', [R, G, err.stride]) : undefined;
  if (n === 0) return;
  ctx.launch(ctx.kernel('key_encode', `key_encode_d${D}`), [blocks, G, 1], [warps * 32, 1, 1], encodeSharedBytes(D, warps), [
    ptr(vs.ptr), ptr(ns.ptr), ptr(hs.ptr), i32(n), i32(R), ptr(cs.ptr + BigInt(codes.from * 4)), i32(total), ptr(es?.ptr ?? 0n), i32(err?.stride ?? 0),
  ]);
}
