import { check, CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { AttentionShape } from '../../backend.js';
import type { CublasLt, GemmShape } from '../cublas.js';
import type { CudaTensor } from '../cuda-tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, i64, ptr, u32, type CudaContextLike, type Dim3, type KernelArg } from '../kernels.js';
import { expectElements, tensorArg } from './tensor-args.js';

/**
 * Launchers of the value-training kernels (kernels/value_*.cu) and of the f32-output GEMM (cuBLASLt, or the fallback
 * kernel where cuBLASLt cannot), for `CudaTrainOps` (values/cuda-train-ops.ts): each takes f32 tensors (and bf16 or
 * f16 inputs where its kernel has such an entry point), checks their sizes, owns its grid, block and scratch, and
 * enqueues on the context's stream. Semantics and shapes are in each kernel's header and in TrainOps (train-ops.ts).
 * Reductions add in a fixed order: the same inputs give the same bits on every run.
 *
 *   gelu(ctx, out, x);   // out, x f32 [T, 4·n_e]
 */

const SUM_ROWS = kernelConstants('value_sum_rows', ['kColumns', 'kRowLanes']);
const LAYER_NORM = kernelConstants('value_layer_norm', ['kColumns', 'kRowLanes']);
const ADD_BIAS = kernelConstants('value_add_bias', ['kThreads', 'kPerThread']);
const MATMUL = kernelConstants('value_matmul_fallback', ['kTile']);
/** Threads per block of the kernels that loop over blockDim (grid-stride and one-row-per-block kernels). */
const THREADS = 256;
// kernels/value_attention_dv.cu is not read for its sizes yet: they are written here as well as there.
const DV = kernelConstants('value_attention_dv', ['kBlockM', 'kBlockN', 'kThreads']);

const f32Arg = (ctx: CudaContextLike, op: string, name: string, t: Tensor): CudaTensor => tensorArg(ctx, op, name, t, 'f32');

function launch(ctx: CudaContextLike, module: string, name: string, grid: Dim3, block: Dim3, args: KernelArg[], sharedBytes = 0): void {
  ctx.launch(ctx.kernel(module, name), grid, block, sharedBytes, args);
}

/** Blocks of 256 threads for a grid-stride loop over n items (at most 8 per SM: enough to fill the GPU). */
export function gridFor(ctx: CudaContextLike, n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / THREADS), 8 * ctx.info.smCount));
}

/** Row slices of the two-pass column sums: about 4 blocks per SM in all, at least one row per row lane per slice. */
function slicing(ctx: CudaContextLike, R: number, C: number, columns: number, rowLanes: number): { slices: number; rowsPer: number } {
  const columnBlocks = Math.ceil(C / columns);
  const wanted = Math.ceil((4 * ctx.info.smCount) / columnBlocks);
  const rowsPer = Math.ceil(R / Math.max(1, Math.min(wanted, Math.ceil(R / rowLanes))));
  return { slices: Math.ceil(R / rowsPer), rowsPer };
}

/**
 * out f32 [M, N] = op(a)·op(b) (+ out with `g.accumulate`), a and b in `g.input` (bf16: bf16 tensor cores; f32: TF32),
 * through cuBLASLt when `blas` has a plan for the shape, else the exact-f32 fallback kernel.
 */
export function matmul(ctx: CudaContextLike, blas: CublasLt | null, out: Tensor, a: Tensor, b: Tensor, g: GemmShape): void {
  const o = f32Arg(ctx, 'matmul', 'out', out);
  expectElements('matmul', 'out', o, g.M * g.N);
  const pa = tensorArg(ctx, 'matmul', 'a', a, g.input);
  expectElements('matmul', 'a', pa, g.M * g.K);
  const pb = tensorArg(ctx, 'matmul', 'b', b, g.input);
  expectElements('matmul', 'b', pb, g.K * g.N);
  if (blas?.gemm(o.ptr, pa.ptr, pb.ptr, g)) return;
  check(g.M <= 65535 * 16, () => `matmul: ${g.M} rows exceed the fallback GEMM's grid`);
  const tile = MATMUL.kTile;
  launch(ctx, 'value_matmul_fallback', `value_matmul_fallback_${g.input}`, [Math.ceil(g.N / tile), Math.ceil(g.M / tile), 1], [tile, tile, 1], [
    ptr(o.ptr), ptr(pa.ptr), ptr(pb.ptr), i32(g.M), i32(g.N), i32(g.K), i32(+g.transA), i32(+g.transB), i32(+g.accumulate),
  ]);
}

/** out f32 [R, C] = x [R, C] (f32 or bf16) + bias f32 [C]. */
export function addBias(ctx: CudaContextLike, out: Tensor, x: Tensor, bias: Tensor): void {
  const b = f32Arg(ctx, 'addBias', 'bias', bias);
  const C = b.numel;
  const px = tensorArg(ctx, 'addBias', 'x', x, ['f32', 'bf16']);
  const o = f32Arg(ctx, 'addBias', 'out', out);
  expectElements('addBias', 'out', o, px.numel);
  const columns = ADD_BIAS.kThreads * ADD_BIAS.kPerThread;
  launch(ctx, 'value_add_bias', `value_add_bias_${px.dtype}`, [px.numel / C, Math.ceil(C / columns), 1], [ADD_BIAS.kThreads, 1, 1], [
    ptr(o.ptr), ptr(px.ptr), ptr(b.ptr), i32(C),
  ]);
}

/** into f32 [C] += column sums of x f32 [R, C], in two passes (deterministic). */
export function sumRowsInto(ctx: CudaContextLike, into: Tensor, x: Tensor): void {
  const dst = f32Arg(ctx, 'sumRowsInto', 'into', into);
  const C = dst.numel;
  const px = f32Arg(ctx, 'sumRowsInto', 'x', x);
  const R = C === 0 ? 0 : px.numel / C;
  if (R === 0 || C === 0) return;
  const { kColumns, kRowLanes } = SUM_ROWS;
  const { slices, rowsPer } = slicing(ctx, R, C, kColumns, kRowLanes);
  const partial = ctx.alloc(slices * C * 4); // [slices, C]
  try {
    launch(ctx, 'value_sum_rows', 'value_sum_rows_partial', [Math.ceil(C / kColumns), slices, 1], [kColumns, kRowLanes, 1], [
      ptr(partial.ptr), ptr(px.ptr), i32(R), i32(C), i32(rowsPer),
    ]);
    launch(ctx, 'value_sum_rows', 'value_sum_rows_finish', [gridFor(ctx, C), 1, 1], [THREADS, 1, 1], [
      ptr(dst.ptr), ptr(partial.ptr), i32(slices), i32(C),
    ]);
  } finally {
    partial.free();
  }
}

/** Value prescale: uhat f32 [T, D], rho f32 [T] from v [T, D] (f32, bf16 or f16) and ls f32 [D]. */
export function prescale(ctx: CudaContextLike, uhat: Tensor, rho: Tensor, v: Tensor, ls: Tensor): void {
  const pl = f32Arg(ctx, 'prescale', 'ls', ls);
  const D = pl.numel;
  const pv = tensorArg(ctx, 'prescale', 'v', v, ['f32', 'bf16', 'f16']);
  const T = pv.numel / D;
  const u = f32Arg(ctx, 'prescale', 'uhat', uhat);
  expectElements('prescale', 'uhat', u, T * D);
  const r = f32Arg(ctx, 'prescale', 'rho', rho);
  expectElements('prescale', 'rho', r, T);
  launch(ctx, 'value_prescale', `value_prescale_${pv.dtype}`, [T, 1, 1], [THREADS, 1, 1], [ptr(u.ptr), ptr(r.ptr), ptr(pv.ptr), ptr(pl.ptr), i32(D)]);
}

/** LayerNorm of rows: y, xhat f32 [R, C] from x f32 [R, C], gamma and beta f32 [C]. */
export function layerNorm(ctx: CudaContextLike, y: Tensor, xhat: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number): void {
  const [py, ph, px, pg, pb] = [y, xhat, x, gamma, beta].map((t, i) => f32Arg(ctx, 'layerNorm', ['y', 'xhat', 'x', 'gamma', 'beta'][i]!, t)) as CudaTensor[];
  const C = pg!.numel;
  const R = C === 0 ? 0 : px!.numel / C;
  expectElements('layerNorm', 'y', py!, R * C);
  expectElements('layerNorm', 'xhat', ph!, R * C);
  launch(ctx, 'value_layer_norm', 'value_layer_norm_f32', [R, 1, 1], [THREADS, 1, 1], [
    ptr(py!.ptr), ptr(ph!.ptr), ptr(px!.ptr), ptr(pg!.ptr), ptr(pb!.ptr), i32(C), f32(eps),
  ]);
}

/** dGamma f32 [C] += Σ_rows dy ⊙ x̂, dBeta f32 [C] += Σ_rows dy, for dy and xhat f32 [R, C] (deterministic). */
export function layerNormParamGrad(ctx: CudaContextLike, dGamma: Tensor, dBeta: Tensor, dy: Tensor, xhat: Tensor): void {
  const dg = f32Arg(ctx, 'layerNormParamGrad', 'dGamma', dGamma);
  const db = f32Arg(ctx, 'layerNormParamGrad', 'dBeta', dBeta);
  const C = dg.numel;
  const pd = f32Arg(ctx, 'layerNormParamGrad', 'dy', dy);
  const px = f32Arg(ctx, 'layerNormParamGrad', 'xhat', xhat);
  const R = C === 0 ? 0 : pd.numel / C;
  if (R === 0 || C === 0) return;
  const { kColumns, kRowLanes } = LAYER_NORM;
  const { slices, rowsPer } = slicing(ctx, R, C, kColumns, kRowLanes);
  const partial = ctx.alloc(slices * 2 * C * 4); // [slices, 2C]
  try {
    launch(ctx, 'value_layer_norm', 'value_layer_norm_grad_partial', [Math.ceil(C / kColumns), slices, 1], [kColumns, kRowLanes, 1], [
      ptr(partial.ptr), ptr(pd.ptr), ptr(px.ptr), i32(R), i32(C), i32(rowsPer),
    ]);
    launch(ctx, 'value_layer_norm', 'value_layer_norm_grad_finish', [gridFor(ctx, C), 1, 1], [THREADS, 1, 1], [
      ptr(dg.ptr), ptr(db.ptr), ptr(partial.ptr), i32(slices), i32(C),
    ]);
  } finally {
    partial.free();
  }
}

/** out f32 = GELU(x) (exact erf), elementwise. */
export function gelu(ctx: CudaContextLike, out: Tensor, x: Tensor): void {
  const o = f32Arg(ctx, 'gelu', 'out', out);
  const px = f32Arg(ctx, 'gelu', 'x', x);
  expectElements('gelu', 'x', px, o.numel);
  launch(ctx, 'value_gelu', 'value_gelu_f32', [gridFor(ctx, o.numel), 1, 1], [THREADS, 1, 1], [ptr(o.ptr), ptr(px.ptr), i64(o.numel)]);
}

/** out f32 = dy ⊙ GELU′(x), elementwise. */
export function geluBackward(ctx: CudaContextLike, out: Tensor, dy: Tensor, x: Tensor): void {
  const o = f32Arg(ctx, 'geluBackward', 'out', out);
  const pd = f32Arg(ctx, 'geluBackward', 'dy', dy);
  const px = f32Arg(ctx, 'geluBackward', 'x', x);
  expectElements('geluBackward', 'dy', pd, o.numel);
  expectElements('geluBackward', 'x', px, o.numel);
  launch(ctx, 'value_gelu', 'value_gelu_backward_f32', [gridFor(ctx, o.numel), 1, 1], [THREADS, 1, 1], [ptr(o.ptr), ptr(pd.ptr), ptr(px.ptr), i64(o.numel)]);
}

/**
 * Hard Gumbel-softmax per 4-way group of logits f32 [T, 4·n_e]: bits f32 [T, 2·n_e], soft f32 [T, 4·n_e]; the noise
 * of element i is gumbel(mix32(key ^ i)) when `sample`, none otherwise (the argmax encoder).
 */
export function gumbelBits(ctx: CudaContextLike, bits: Tensor, soft: Tensor, logits: Tensor, tau: number, key: number, sample: boolean): void {
  const pl = f32Arg(ctx, 'gumbelBits', 'logits', logits);
  const groups = pl.numel / 4;
  const b = f32Arg(ctx, 'gumbelBits', 'bits', bits);
  expectElements('gumbelBits', 'bits', b, 2 * groups);
  const s = f32Arg(ctx, 'gumbelBits', 'soft', soft);
  expectElements('gumbelBits', 'soft', s, 4 * groups);
  launch(ctx, 'value_gumbel_bits', 'value_gumbel_bits_f32', [gridFor(ctx, groups), 1, 1], [THREADS, 1, 1], [
    ptr(b.ptr), ptr(s.ptr), ptr(pl.ptr), i64(groups), f32(tau), u32(key), i32(sample ? 1 : 0),
  ]);
}

/** Straight-through backward: dLogits f32 [T, 4·n_e] += the gradient through soft for dBits f32 [T, 2·n_e]. */
export function gumbelBitsBackward(ctx: CudaContextLike, dLogits: Tensor, dBits: Tensor, soft: Tensor, tau: number): void {
  const ps = f32Arg(ctx, 'gumbelBitsBackward', 'soft', soft);
  const groups = ps.numel / 4;
  const o = f32Arg(ctx, 'gumbelBitsBackward', 'dLogits', dLogits);
  expectElements('gumbelBitsBackward', 'dLogits', o, 4 * groups);
  const pd = f32Arg(ctx, 'gumbelBitsBackward', 'dBits', dBits);
  expectElements('gumbelBitsBackward', 'dBits', pd, 2 * groups);
  launch(ctx, 'value_gumbel_bits', 'value_gumbel_bits_backward_f32', [gridFor(ctx, groups), 1, 1], [THREADS, 1, 1], [
    ptr(o.ptr), ptr(pd.ptr), ptr(ps.ptr), i64(groups), f32(1 / tau),
  ]);
}

/** Decode per row: out f32 [T, D] from w f32 [T, D], rho f32 [T], ls f32 [D]. */
export function decode(ctx: CudaContextLike, out: Tensor, w: Tensor, rho: Tensor, ls: Tensor): void {
  const [o, pw, pr, pl] = [out, w, rho, ls].map((t, i) => f32Arg(ctx, 'decode', ['out', 'w', 'rho', 'ls'][i]!, t)) as CudaTensor[];
  const D = pl!.numel;
  const T = pr!.numel;
  expectElements('decode', 'w', pw!, T * D);
  expectElements('decode', 'out', o!, T * D);
  launch(ctx, 'value_decode', 'value_decode_f32', [T, 1, 1], [THREADS, 1, 1], [ptr(o!.ptr), ptr(pw!.ptr), ptr(pr!.ptr), ptr(pl!.ptr), i32(D)]);
}

/** Decode backward: out f32 [T, D] = dw from dvhat, w f32 [T, D], rho f32 [T], ls f32 [D]. */
export function decodeBackward(ctx: CudaContextLike, out: Tensor, dvhat: Tensor, w: Tensor, rho: Tensor, ls: Tensor): void {
  const [o, pd, pw, pr, pl] = [out, dvhat, w, rho, ls].map((t, i) => f32Arg(ctx, 'decodeBackward', ['out', 'dvhat', 'w', 'rho', 'ls'][i]!, t)) as CudaTensor[];
  const D = pl!.numel;
  const T = pr!.numel;
  for (const [name, t] of [['out', o], ['dvhat', pd], ['w', pw]] as const) expectElements('decodeBackward', name, t!, T * D);
  launch(ctx, 'value_decode', 'value_decode_backward_f32', [T, 1, 1], [THREADS, 1, 1], [
    ptr(o!.ptr), ptr(pd!.ptr), ptr(pw!.ptr), ptr(pr!.ptr), ptr(pl!.ptr), i32(D),
  ]);
}

/**
 * Σ (a − b)² (b absent: Σ a²) over a (f32 or bf16) and b (f32 or bf16, as many elements), with grad f32 =
 * twoScale·(a − b) when given; waits for the GPU once to add the block sums (f64, in block order).
 */
export function sumOfSquares(ctx: CudaContextLike, a: Tensor, b: Tensor | undefined, grad: Tensor | undefined, twoScale: number): number {
  const pa = tensorArg(ctx, 'squaredError', 'a', a, ['f32', 'bf16']);
  const n = pa.numel;
  const pb = b === undefined ? undefined : tensorArg(ctx, 'squaredError', 'b', b, ['f32', 'bf16']);
  if (pb) expectElements('squaredError', 'b', pb, n);
  const pg = grad === undefined ? undefined : f32Arg(ctx, 'squaredError', 'grad', grad);
  if (pg) expectElements('squaredError', 'grad', pg, n);
  if (n === 0) return 0;
  const blocks = Math.min(Math.ceil(n / THREADS), 4 * ctx.info.smCount);
  const partial = ctx.alloc(blocks * 8); // f64 [blocks]
  try {
    launch(ctx, 'value_squared_error', `value_squared_error_${pa.dtype}_${pb?.dtype ?? 'f32'}`, [blocks, 1, 1], [THREADS, 1, 1], [
      ptr(partial.ptr), ptr(pg?.ptr ?? 0n), ptr(pa.ptr), ptr(pb?.ptr ?? 0n), i64(n), f32(twoScale),
    ]);
    const sums = new Float64Array(blocks);
    ctx.download(new Uint8Array(sums.buffer), partial.ptr);
    let total = 0;
    for (const s of sums) total += s;
    return total;
  } finally {
    partial.free();
  }
}

/**
 * dv f32 [kvLength, H_kv·D_h] = Σ_h P_hᵀ·dOut_h of causal GQA attention, P recomputed from q [Tq, H_q·D_h] and
 * k [≥kvLength, H_kv·D_h] (bf16, post-RoPE) and dOut bf16 [Tq, H_q·D_h]: a row-LSE pass, then the dV pass.
 */
export function attentionValueGrad(ctx: CudaContextLike, dv: Tensor, q: Tensor, k: Tensor, dOut: Tensor, s: AttentionShape): void {
  const { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength } = s;
  const op = 'attentionValueGrad';
  if (D !== 64 && D !== 128) throw new CommvqError(`${op}: head dim ${D} is not supported`, 'the CUDA kernel is built for D_h 64 and 128');
  const pq = tensorArg(ctx, op, 'q', q, 'bf16');
  const Tq = pq.numel / (Hq * D);
  const pk = tensorArg(ctx, op, 'k', k, 'bf16');
  expectElements(op, 'k', pk, kvLength * Hkv * D);
  const pd = tensorArg(ctx, op, 'dOut', dOut, 'bf16');
  expectElements(op, 'dOut', pd, Tq * Hq * D);
  const out = f32Arg(ctx, op, 'dv', dv);
  expectElements(op, 'dv', out, kvLength * Hkv * D);
  check(Math.ceil(Tq / DV.kBlockM) <= 65535 && Math.ceil(kvLength / DV.kBlockM) <= 65535, `${op}: too many rows for one launch`);
  const ldl = Math.ceil(Tq / DV.kBlockN) * DV.kBlockN;
  const lse = ctx.alloc(Hq * ldl * 4); // [H_q, ldl] f32
  try {
    const common = [i32(Tq), i32(Hq), i32(Hkv), i32(qStart), i32(kvLength), f32(1 / Math.sqrt(D)), i32(ldl)];
    launch(ctx, 'value_attention_dv', `value_attention_lse_d${D}`, [Hq, Math.ceil(Tq / DV.kBlockM), 1], [DV.kThreads, 1, 1], [
      ptr(pq.ptr), ptr(pk.ptr), ptr(lse.ptr), ...common,
    ], (DV.kBlockM + 2 * DV.kBlockN) * D * 2);
    launch(ctx, 'value_attention_dv', `value_attention_dv_d${D}`, [Hkv, Math.ceil(kvLength / DV.kBlockM), 1], [DV.kThreads, 1, 1], [
      ptr(pq.ptr), ptr(pk.ptr), ptr(pd.ptr), ptr(lse.ptr), ptr(out.ptr), ...common,
    ], (DV.kBlockM + 4 * DV.kBlockN) * D * 2 + 2 * DV.kBlockN * 4);
  } finally {
    lse.free();
  }
}

/** The scalars of one AdamW step; c1, c2 = the bias corrections 1 − β^step. */
export interface AdamWStep {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly c1: number;
  readonly c2: number;
}

/** One AdamW step in place on param, m, v (f32, as many elements as grad f32). */
export function adamw(ctx: CudaContextLike, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWStep): void {
  const [p, pg, pm, pv] = [param, grad, m, v].map((t, i) => f32Arg(ctx, 'adamw', ['param', 'grad', 'm', 'v'][i]!, t)) as CudaTensor[];
  const n = p!.numel;
  for (const [name, t] of [['grad', pg], ['m', pm], ['v', pv]] as const) expectElements('adamw', name, t!, n);
  launch(ctx, 'value_adamw', 'value_adamw_f32', [gridFor(ctx, n), 1, 1], [THREADS, 1, 1], [
    ptr(p!.ptr), ptr(pg!.ptr), ptr(pm!.ptr), ptr(pv!.ptr), i64(n),
    f32(o.lr), f32(o.beta1), f32(o.beta2), f32(o.eps), f32(o.weightDecay), f32(o.c1), f32(o.c2),
  ]);
}

/** x f32 ← s·x in place. */
export function scaleInPlace(ctx: CudaContextLike, x: Tensor, s: number): void {
  const t = f32Arg(ctx, 'scaleInPlace', 'x', x);
  launch(ctx, 'value_scale', 'value_scale_f32', [gridFor(ctx, t.numel), 1, 1], [THREADS, 1, 1], [ptr(t.ptr), i64(t.numel), f32(s)]);
}
