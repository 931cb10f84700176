import { CommvqError } from '../../../errors.js';
import type { DType } from '../../../tensor/dtype.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { asCuda, deviceOf, emptyTensor, type CudaTensor } from '../cuda-tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, i64, ptr, type CudaContextLike } from '../kernels.js';
import { expectElements, tensorArg } from './tensor-args.js';

/**
 * Launchers of the model's kernels (kernels/embedding.cu, rms_norm.cu, rope.cu, add.cu, swiglu.cu, bias_add.cu,
 * cast.cu, argmax.cu, softmax.cu, fill_random.cu, gemm_fallback.cu, scatter_rows.cu): each takes the output and input
 * tensors, checks their dtypes and sizes, owns its grid and block choice, and enqueues on the context's stream.
 * Shapes and semantics are in each kernel's header comment. Kernels that loop over blockDim take any block the
 * launcher picks; the others' sizes come from their sources.
 *
 *   rmsNorm(ctx, out, x, weight, 1e-5);   // out, x bf16 [T, 4096], weight bf16 [4096]
 */

const PER_THREAD = kernelConstants('add', ['kPerThread']);
const SWIGLU = kernelConstants('swiglu', ['kPerThread']);
const GEMM = kernelConstants('gemm_fallback', ['TILE']);

/** Threads per block of the grid-stride and one-item-per-thread kernels (any multiple of 32 works for them). */
const THREADS = 256;
const MAX_GRID_STRIDE_BLOCKS = 65535 * 16;

export type FloatDType = 'f32' | 'bf16' | 'f16';

export function isFloatDType(d: DType): d is FloatDType {
  return d === 'f32' || d === 'bf16' || d === 'f16';
}

/** Threads for a one-block-per-row kernel doing `work` items per row: a multiple of 32 in [32, 1024]. */
function rowThreads(work: number): number {
  return Math.min(1024, Math.max(32, Math.ceil(work / 32) * 32));
}

function gridStride(n: number): number {
  return Math.max(1, Math.min(MAX_GRID_STRIDE_BLOCKS, Math.ceil(n / THREADS)));
}

const lastDim = (t: Tensor): number => t.shape[t.shape.length - 1] ?? 1;

/** out [T, hidden] ← rows ids i32 [T] of table [V, hidden] (bf16). */
export function embedding(ctx: CudaContextLike, out: Tensor, table: Tensor, ids: Tensor): void {
  const t = tensorArg(ctx, 'embedding', 'table', table, 'bf16', [-1, -1]);
  const [V, hidden] = t.shape as [number, number];
  const i = tensorArg(ctx, 'embedding', 'ids', ids, 'i32');
  const o = tensorArg(ctx, 'embedding', 'out', out, 'bf16', [i.numel, hidden]);
  ctx.launch(ctx.kernel('embedding', 'embedding_bf16'), [i.numel, 1, 1], [THREADS, 1, 1], 0, [ptr(o.ptr), ptr(t.ptr), ptr(i.ptr), i32(V), i32(hidden)]);
}

/** out ← x·rsqrt(mean(x²) + eps)·weight per row; x, out bf16 [rows, F], weight bf16 [F]. */
export function rmsNorm(ctx: CudaContextLike, out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
  const w = tensorArg(ctx, 'rmsNorm', 'weight', weight, 'bf16');
  const F = w.numel;
  const xs = tensorArg(ctx, 'rmsNorm', 'x', x, 'bf16');
  const o = tensorArg(ctx, 'rmsNorm', 'out', out, 'bf16');
  sameElements('rmsNorm', o, xs);
  const threads = rowThreads(F % 8 === 0 ? F / 8 : F);
  ctx.launch(ctx.kernel('rms_norm', 'rms_norm_bf16'), [xs.numel / F, 1, 1], [threads, 1, 1], 0, [ptr(o.ptr), ptr(xs.ptr), ptr(w.ptr), i32(F), f32(eps)]);
}

/**
 * Rotary embedding of x bf16 [T, heads·D_h] into out: row t at position positions[t] (i32 [T]), angles from
 * invFreq f32 [D_h/2], cos and sin scaled by `scaling`.
 */
export function rope(ctx: CudaContextLike, out: Tensor, x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number, scaling: number): void {
  const xs = tensorArg(ctx, 'rope', 'x', x, 'bf16');
  const T = xs.shape[0] ?? 1;
  const heads = xs.numel / Math.max(1, T) / headDim;
  const o = tensorArg(ctx, 'rope', 'out', out, 'bf16');
  sameElements('rope', o, xs);
  const p = tensorArg(ctx, 'rope', 'positions', positions, 'i32');
  expectElements('rope', 'positions', p, T);
  const f = tensorArg(ctx, 'rope', 'invFreq', invFreq, 'f32');
  expectElements('rope', 'invFreq', f, headDim / 2);
  const threads = Math.min(128, Math.max(32, Math.ceil(headDim / 2 / 32) * 32));
  ctx.launch(ctx.kernel('rope', 'rope_bf16'), [T, heads, 1], [threads, 1, 1], 0, [
    ptr(o.ptr), ptr(xs.ptr), ptr(p.ptr), ptr(f.ptr), i32(heads), i32(headDim), f32(scaling),
  ]);
}

function elementwise8(ctx: CudaContextLike, module: string, name: string, perThread: number, out: Tensor, a: Tensor, b: Tensor): void {
  const [o, x, y] = [out, a, b].map((t, i) => tensorArg(ctx, name, ['out', 'a', 'b'][i]!, t, 'bf16')) as [CudaTensor, CudaTensor, CudaTensor];
  sameElements(name, o, x);
  sameElements(name, o, y);
  ctx.launch(ctx.kernel(module, name), [Math.ceil(o.numel / (THREADS * perThread)), 1, 1], [THREADS, 1, 1], 0, [ptr(o.ptr), ptr(x.ptr), ptr(y.ptr), i64(o.numel)]);
}

/** out ← silu(gate)·up, bf16, same sizes. */
export function swiglu(ctx: CudaContextLike, out: Tensor, gate: Tensor, up: Tensor): void {
  elementwise8(ctx, 'swiglu', 'swiglu_bf16', SWIGLU.kPerThread, out, gate, up);
}

/** out ← a + b, bf16, same sizes. */
export function add(ctx: CudaContextLike, out: Tensor, a: Tensor, b: Tensor): void {
  elementwise8(ctx, 'add', 'add_bf16', PER_THREAD.kPerThread, out, a, b);
}

/** out ← x + bias per row; x, out bf16 [rows, cols], bias bf16 [cols] (out may be x). */
export function biasAdd(ctx: CudaContextLike, out: Tensor, x: Tensor, bias: Tensor): void {
  const bs = tensorArg(ctx, 'biasAdd', 'bias', bias, 'bf16');
  const xs = tensorArg(ctx, 'biasAdd', 'x', x, 'bf16');
  const o = tensorArg(ctx, 'biasAdd', 'out', out, 'bf16');
  sameElements('biasAdd', o, xs);
  const cols = bs.numel;
  const kernel = ctx.kernel('bias_add', 'bias_add_bf16');
  ctx.launch(kernel, [xs.numel / cols, Math.ceil(cols / THREADS), 1], [THREADS, 1, 1], 0, [ptr(o.ptr), ptr(xs.ptr), ptr(bs.ptr), i32(cols)]);
}

/** out ← x converted (f32, bf16, f16; same number of elements). */
export function cast(ctx: CudaContextLike, out: Tensor, x: Tensor): void {
  const xs = asCuda(x, deviceOf(ctx), 'cast');
  const o = asCuda(out, deviceOf(ctx), 'cast');
  const from = floatDType(xs.dtype, 'cast');
  const to = floatDType(o.dtype, 'cast');
  sameElements('cast', o, xs);
  ctx.launch(ctx.kernel('cast', `cast_${from}_to_${to}`), [gridStride(o.numel), 1, 1], [THREADS, 1, 1], 0, [ptr(o.ptr), ptr(xs.ptr), i64(o.numel)]);
}

/** out i32 [rows] ← index of the largest value of each row of x [rows, F] (f32 or bf16; first on ties). */
export function argmaxRows(ctx: CudaContextLike, out: Tensor, x: Tensor): void {
  const xs = tensorArg(ctx, 'argmaxRows', 'x', x, ['f32', 'bf16']);
  const F = lastDim(xs);
  const o = tensorArg(ctx, 'argmaxRows', 'out', out, 'i32');
  expectElements('argmaxRows', 'out', o, xs.numel / F);
  ctx.launch(ctx.kernel('argmax', `argmax_rows_${xs.dtype}`), [xs.numel / F, 1, 1], [rowThreads(F), 1, 1], 0, [ptr(o.ptr), ptr(xs.ptr), i32(F)]);
}

/** out f32 [rows, F] ← softmax of each row of x (f32 or bf16) times invTemperature. */
export function softmaxRows(ctx: CudaContextLike, out: Tensor, x: Tensor, invTemperature: number): void {
  const xs = tensorArg(ctx, 'softmaxRows', 'x', x, ['f32', 'bf16']);
  const o = tensorArg(ctx, 'softmaxRows', 'out', out, 'f32');
  sameElements('softmaxRows', o, xs);
  const F = lastDim(xs);
  ctx.launch(ctx.kernel('softmax', `softmax_rows_${xs.dtype}`), [xs.numel / F, 1, 1], [rowThreads(F), 1, 1], 0, [
    ptr(o.ptr), ptr(xs.ptr), i32(F), f32(invTemperature),
  ]);
}

/** Overwrites out (f32 or bf16) with seeded random values. uniform: a = low, b = high; normal: a = mean, b = std. */
export function fillRandom(ctx: CudaContextLike, out: Tensor, distribution: 'uniform' | 'normal', seed: bigint, a: number, b: number): void {
  const o = tensorArg(ctx, 'fillRandom', 'out', out, ['f32', 'bf16']);
  ctx.launch(ctx.kernel('fill_random', `fill_${distribution}_${o.dtype}`), [gridStride(o.numel), 1, 1], [THREADS, 1, 1], 0, [
    ptr(o.ptr), i64(o.numel), i64(seed), f32(a), f32(b),
  ]);
}

/** y [T, out] ← x [T, in]·wᵀ with w [out, in], bf16, f32 accumulation: where cuBLASLt cannot. */
export function gemmFallback(ctx: CudaContextLike, y: Tensor, x: Tensor, w: Tensor): void {
  const ws = tensorArg(ctx, 'gemmFallback', 'w', w, 'bf16', [-1, -1]);
  const [outF, inF] = ws.shape as [number, number];
  const xs = tensorArg(ctx, 'gemmFallback', 'x', x, 'bf16');
  const T = xs.numel / inF;
  const ys = tensorArg(ctx, 'gemmFallback', 'y', y, 'bf16');
  expectElements('gemmFallback', 'y', ys, T * outF);
  const tile = GEMM.TILE;
  ctx.launch(ctx.kernel('gemm_fallback', 'gemm_bf16_fallback'), [Math.ceil(outF / tile), Math.ceil(T / tile), 1], [tile, tile, 1], 0, [
    ptr(ys.ptr), ptr(xs.ptr), ptr(ws.ptr), i32(T), i32(inF), i32(outF),
  ]);
}

/** dst[rows[i]] ← src[i] for src [n, F] and rows i32 [n] read on the device (same dtype; rows of dst [R, F]). */
export function scatterRows(ctx: CudaContextLike, dst: Tensor, rows: Tensor, src: Tensor): void {
  const d = asCuda(dst, deviceOf(ctx), 'scatterRows');
  const s = tensorArg(ctx, 'scatterRows', 'src', src, d.dtype);
  const r = tensorArg(ctx, 'scatterRows', 'rows', rows, 'i32');
  const R = d.shape[0]!;
  const rowBytes = d.byteLength / R;
  if (s.byteLength !== r.numel * rowBytes) throw new CommvqError(`scatterRows: ${s.byteLength} source bytes for ${r.numel} rows of ${rowBytes}`);
  ctx.launch(ctx.kernel('scatter_rows', 'scatter_rows'), [r.numel, 1, 1], [THREADS, 1, 1], 0, [ptr(d.ptr), ptr(s.ptr), ptr(r.ptr), i32(R), i64(rowBytes)]);
}

/**
 * Runs `fn` with each input in the float dtype asked for: tensors already in it as they are, others through a
 * temporary cast copy of the same shape, freed once `fn` has enqueued its work (one stream keeps the order).
 *
 *   withDTypes(ctx, 'linear', [[x, 'bf16'], [w, 'bf16']], ([xb, wb]) => gemmFallback(ctx, y, xb!, wb!));
 */
export function withDTypes<T>(ctx: CudaContextLike, op: string, inputs: readonly (readonly [Tensor, FloatDType])[], fn: (ts: CudaTensor[]) => T): T {
  const temps: CudaTensor[] = [];
  try {
    const ts = inputs.map(([t, want]) => {
      const c = asCuda(t, deviceOf(ctx), op);
      if (c.dtype === want) return c;
      floatDType(c.dtype, op);
      const tmp = emptyTensor(ctx, c.shape, want);
      temps.push(tmp);
      cast(ctx, tmp, c);
      return tmp;
    });
    return fn(ts);
  } finally {
    for (const t of temps) t.dispose();
  }
}

function floatDType(d: DType, op: string): FloatDType {
  if (!isFloatDType(d)) throw new CommvqError(`${op}: ${d} tensors cannot be converted on the GPU (float dtypes only)`);
  return d;
}

function sameElements(op: string, out: CudaTensor, x: CudaTensor): void {
  if (out.numel !== x.numel) throw new CommvqError(`${op}: ${out.numel} output elements for ${x.numel} input elements`);
}
