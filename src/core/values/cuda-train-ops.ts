import type { AttentionShape } from '../backend/backend.js';
import type { CudaContext } from '../backend/cuda/context.js';
import { CublasLt, type GemmShape } from '../backend/cuda/cublas.js';
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { asCuda, CudaTensor } from '../backend/cuda/cuda-tensor.js';
import { f32, i32, i64, ptr, u32, type DeviceBlock, type Dim3, type KernelArg } from '../backend/cuda/kernels.js';
import * as k from '../backend/cuda/launchers.js';
import { check, CommvqError } from '../errors.js';
import { shapeString, type Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { mix32, type AdamWOptions, type GumbelNoise, type TrainOps } from './train-ops.js';

/**
 * How `matmul` multiplies: 'bf16' rounds both inputs to bf16 and runs bf16 tensor cores with f32 accumulation (the
 * reference trains in bf16; the fastest), 'tf32' keeps f32 inputs and runs TF32 tensor cores (10 mantissa bits per
 * product, f32 accumulation). The output is f32 either way.
 */
export type MatmulPrecision = 'bf16' | 'tf32';

const THREADS = 256;
const ROWS_PER_SLICE_MIN = 8; // value_sum_rows / value_layer_norm_grad: row lanes per block
const LSE_ROWS = 128; // kernels/value_attention_dv.cu kBlockM
const TILE_ROWS = 64; // kernels/value_attention_dv.cu kBlockN

/**
 * TrainOps on the GPU: kernels/value_*.cu for everything but the GEMMs, cuBLASLt for those (bf16 inputs with f32
 * accumulation by default, see MatmulPrecision), a flash-style kernel for attentionValueGrad. Tensors are f32 on the
 * device; inputs documented as "any float dtype" (v, q, k, the operands of matmul and squaredError) may be bf16.
 * Reductions (sumRowsInto, layerNormParamGrad, squaredError, sumSquares) add in a fixed order: the same inputs give
 * the same bits on every run. Tested against CpuTrainOps in test/gpu/train-ops.test.ts. One owner: `dispose()` frees
 * its cuBLASLt handle and workspace (tensors it returns belong to the caller).
 *
 *   const ops = new CudaTrainOps(CudaBackend.create(0));
 *   const h = ops.matmul(x, w1, { transB: true });          // x [T, D] · w1 [inter, D]ᵀ → [T, inter] f32
 *   ops.matmul(dh, x, { transA: true, accumulate: dW1 });   // dW1 [inter, D] += dhᵀ·x
 */
export class CudaTrainOps implements TrainOps {
  readonly precision: MatmulPrecision;
  private readonly ctx: CudaContext;
  private blasLib: CublasLt | null | undefined;

  constructor(
    readonly backend: CudaBackend,
    options: { matmul?: MatmulPrecision } = {},
  ) {
    this.ctx = backend.ctx;
    this.precision = options.matmul ?? 'bf16';
  }

  matmul(a: Tensor, b: Tensor, o: { transA?: boolean; transB?: boolean; accumulate?: Tensor } = {}): Tensor {
    const [ar, ac] = dims(a);
    const [br, bc] = dims(b);
    const [M, K] = o.transA ? [ac, ar] : [ar, ac];
    const [K2, N] = o.transB ? [bc, br] : [br, bc];
    check(K === K2, () => `matmul: inner sizes ${K} and ${K2} differ (${shapeString(a.shape)}, ${shapeString(b.shape)})`);
    const out = o.accumulate ? this.f32Out(o.accumulate, M * N, 'matmul accumulate') : this.empty([M, N]);
    if (M === 0 || N === 0) return out;
    if (K === 0) {
      if (!o.accumulate) this.ctx.memset(out.ptr, 0, out.byteLength);
      return out;
    }
    const input = this.precision === 'bf16' ? 'bf16' : 'f32';
    this.withInputs('matmul', [[a, input], [b, input]], ([pa, pb]) => {
      const g: GemmShape = { M, N, K, transA: !!o.transA, transB: !!o.transB, input, accumulate: !!o.accumulate };
      if (this.blas()?.gemm(out.ptr, pa!, pb!, g)) return;
      check(M <= 65535 * 16, () => `matmul: ${M} rows exceed the fallback GEMM's grid`);
      this.launch('value_matmul_fallback', `value_matmul_fallback_${input}`, [Math.ceil(N / 16), Math.ceil(M / 16), 1], [16, 16, 1], [
        ptr(out.ptr), ptr(pa!), ptr(pb!), i32(M), i32(N), i32(K), i32(+!!o.transA), i32(+!!o.transB), i32(+!!o.accumulate),
      ]);
    });
    return out;
  }

  addBias(x: Tensor, bias: Tensor): Tensor {
    const [R, C] = dims(x);
    check(numelOf(bias) === C, () => `addBias: bias ${shapeString(bias.shape)} for rows of ${C}`);
    const out = this.empty(x.shape);
    const xType = x.dtype === 'bf16' ? 'bf16' : 'f32';
    this.withInputs('addBias', [[x, xType], [bias, 'f32']], ([px, pb]) => {
      this.launch('value_add_bias', `value_add_bias_${xType}`, [R, Math.ceil(C / 1024), 1], [THREADS, 1, 1], [
        ptr(out.ptr), ptr(px!), ptr(pb!), i32(C),
      ]);
    });
    return out;
  }

  sumRowsInto(x: Tensor, into: Tensor): void {
    const [R, C] = dims(x);
    const dst = this.f32Out(into, C, 'sumRowsInto');
    if (R === 0 || C === 0) return;
    const { slices, rowsPer } = this.slicing(R, C);
    const partial = this.ctx.alloc(slices * C * 4);
    try {
      this.withInputs('sumRowsInto', [[x, 'f32']], ([px]) => {
        this.launch('value_sum_rows', 'value_sum_rows_partial', [Math.ceil(C / 32), slices, 1], [32, 8, 1], [
          ptr(partial.ptr), ptr(px!), i32(R), i32(C), i32(rowsPer),
        ]);
      });
      this.launch('value_sum_rows', 'value_sum_rows_finish', [this.gridFor(C), 1, 1], [THREADS, 1, 1], [
        ptr(dst.ptr), ptr(partial.ptr), i32(slices), i32(C),
      ]);
    } finally {
      partial.free();
    }
  }

  prescale(v: Tensor, ls: Tensor): { uhat: Tensor; rho: Tensor } {
    const D = numelOf(ls);
    const [T, width] = dims(v);
    check(width === D, () => `prescale: v ${shapeString(v.shape)} for a scale of ${D}`);
    const uhat = this.empty([T, D]);
    const rho = this.empty([T]);
    const vType = v.dtype === 'bf16' || v.dtype === 'f16' ? v.dtype : 'f32';
    this.withInputs('prescale', [[v, vType], [ls, 'f32']], ([pv, pl]) => {
      this.launch('value_prescale', `value_prescale_${vType}`, [T, 1, 1], [THREADS, 1, 1], [
        ptr(uhat.ptr), ptr(rho.ptr), ptr(pv!), ptr(pl!), i32(D),
      ]);
    });
    return { uhat, rho };
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): { y: Tensor; xhat: Tensor } {
    const [R, C] = dims(x);
    check(numelOf(gamma) === C && numelOf(beta) === C, () => `layerNorm: γ, β for rows of ${C}`);
    const y = this.empty(x.shape);
    const xhat = this.empty(x.shape);
    this.withInputs('layerNorm', [[x, 'f32'], [gamma, 'f32'], [beta, 'f32']], ([px, pg, pb]) => {
      this.launch('value_layer_norm', 'value_layer_norm_f32', [R, 1, 1], [THREADS, 1, 1], [
        ptr(y.ptr), ptr(xhat.ptr), ptr(px!), ptr(pg!), ptr(pb!), i32(C), f32(eps),
      ]);
    });
    return { y, xhat };
  }

  layerNormParamGrad(dy: Tensor, xhat: Tensor, dGamma: Tensor, dBeta: Tensor): void {
    const [R, C] = dims(dy);
    check(numelOf(xhat) === R * C, () => `layerNormParamGrad: x̂ ${shapeString(xhat.shape)} for dy ${shapeString(dy.shape)}`);
    const dg = this.f32Out(dGamma, C, 'layerNormParamGrad dGamma');
    const db = this.f32Out(dBeta, C, 'layerNormParamGrad dBeta');
    if (R === 0 || C === 0) return;
    const { slices, rowsPer } = this.slicing(R, C);
    const partial = this.ctx.alloc(slices * 2 * C * 4);
    try {
      this.withInputs('layerNormParamGrad', [[dy, 'f32'], [xhat, 'f32']], ([pd, px]) => {
        this.launch('value_layer_norm', 'value_layer_norm_grad_partial', [Math.ceil(C / 32), slices, 1], [32, 8, 1], [
          ptr(partial.ptr), ptr(pd!), ptr(px!), i32(R), i32(C), i32(rowsPer),
        ]);
      });
      this.launch('value_layer_norm', 'value_layer_norm_grad_finish', [this.gridFor(C), 1, 1], [THREADS, 1, 1], [
        ptr(dg.ptr), ptr(db.ptr), ptr(partial.ptr), i32(slices), i32(C),
      ]);
    } finally {
      partial.free();
    }
  }

  gelu(x: Tensor): Tensor {
    const out = this.empty(x.shape);
    this.withInputs('gelu', [[x, 'f32']], ([px]) => {
      this.launch('value_gelu', 'value_gelu_f32', [this.gridFor(out.numel), 1, 1], [THREADS, 1, 1], [ptr(out.ptr), ptr(px!), i64(out.numel)]);
    });
    return out;
  }

  geluBackward(dy: Tensor, x: Tensor): Tensor {
    check(numelOf(dy) === numelOf(x), () => `geluBackward: dy ${shapeString(dy.shape)} for x ${shapeString(x.shape)}`);
    const out = this.empty(x.shape);
    this.withInputs('geluBackward', [[dy, 'f32'], [x, 'f32']], ([pd, px]) => {
      this.launch('value_gelu', 'value_gelu_backward_f32', [this.gridFor(out.numel), 1, 1], [THREADS, 1, 1], [
        ptr(out.ptr), ptr(pd!), ptr(px!), i64(out.numel),
      ]);
    });
    return out;
  }

  gumbelBits(logits: Tensor, tau: number, noise: GumbelNoise): { bits: Tensor; soft: Tensor } {
    const [T, W] = dims(logits);
    check(W % 4 === 0, () => `gumbelBits: rows of ${W} logits are not whole 4-way groups`);
    check(tau > 0, 'gumbelBits: τ must be positive');
    const groups = (T * W) / 4;
    const bits = this.empty([T, W / 2]);
    const soft = this.empty([T, W]);
    // gumbelNoise(seed, stream, i) = f(mix32(key ^ i)) with key = mix32(mix32(seed) ^ stream), as in train-ops.ts
    const key = noise === 'argmax' ? 0 : mix32((mix32(noise.seed >>> 0) ^ noise.stream) >>> 0);
    this.withInputs('gumbelBits', [[logits, 'f32']], ([pl]) => {
      this.launch('value_gumbel_bits', 'value_gumbel_bits_f32', [this.gridFor(groups), 1, 1], [THREADS, 1, 1], [
        ptr(bits.ptr), ptr(soft.ptr), ptr(pl!), i64(groups), f32(tau), u32(key), i32(noise === 'argmax' ? 0 : 1),
      ]);
    });
    return { bits, soft };
  }

  gumbelBitsBackward(dBits: Tensor, soft: Tensor, tau: number, dLogits: Tensor): void {
    const groups = numelOf(soft) / 4;
    check(Number.isInteger(groups) && numelOf(dBits) === 2 * groups, () => `gumbelBitsBackward: dBits ${shapeString(dBits.shape)} for soft ${shapeString(soft.shape)}`);
    const out = this.f32Out(dLogits, 4 * groups, 'gumbelBitsBackward dLogits');
    this.withInputs('gumbelBitsBackward', [[dBits, 'f32'], [soft, 'f32']], ([pd, ps]) => {
      this.launch('value_gumbel_bits', 'value_gumbel_bits_backward_f32', [this.gridFor(groups), 1, 1], [THREADS, 1, 1], [
        ptr(out.ptr), ptr(pd!), ptr(ps!), i64(groups), f32(1 / tau),
      ]);
    });
  }

  decode(w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    const { T, D } = this.tokenRows('decode', w, rho, ls);
    const out = this.empty(w.shape);
    this.withInputs('decode', [[w, 'f32'], [rho, 'f32'], [ls, 'f32']], ([pw, pr, pl]) => {
      this.launch('value_decode', 'value_decode_f32', [T, 1, 1], [THREADS, 1, 1], [ptr(out.ptr), ptr(pw!), ptr(pr!), ptr(pl!), i32(D)]);
    });
    return out;
  }

  decodeBackward(dvhat: Tensor, w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    const { T, D } = this.tokenRows('decodeBackward', w, rho, ls);
    check(numelOf(dvhat) === T * D, () => `decodeBackward: dv̂ ${shapeString(dvhat.shape)} for w ${shapeString(w.shape)}`);
    const out = this.empty(w.shape);
    this.withInputs('decodeBackward', [[dvhat, 'f32'], [w, 'f32'], [rho, 'f32'], [ls, 'f32']], ([pd, pw, pr, pl]) => {
      this.launch('value_decode', 'value_decode_backward_f32', [T, 1, 1], [THREADS, 1, 1], [
        ptr(out.ptr), ptr(pd!), ptr(pw!), ptr(pr!), ptr(pl!), i32(D),
      ]);
    });
    return out;
  }

  squaredError(a: Tensor, b: Tensor, gradScale?: number): { sum: number; grad?: Tensor } {
    check(numelOf(a) === numelOf(b), () => `squaredError: shapes ${shapeString(a.shape)} and ${shapeString(b.shape)} differ`);
    const grad = gradScale === undefined ? undefined : this.empty(a.shape);
    const sum = this.sumOfSquares('squaredError', a, b, grad, 2 * (gradScale ?? 0));
    return { sum, grad };
  }

  attentionValueGrad(q: Tensor, k_: Tensor, dOut: Tensor, s: AttentionShape): Tensor {
    const { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength } = s;
    if (D !== 64 && D !== 128) throw new CommvqError(`attentionValueGrad: head dim ${D} is not supported`, 'the CUDA kernel is built for D_h 64 and 128');
    check(Hq % Hkv === 0, () => `attentionValueGrad: ${Hq} query heads are not a multiple of ${Hkv} kv heads`);
    const [Tq, qWidth] = dims(q);
    check(qWidth === Hq * D && numelOf(dOut) === Tq * Hq * D, () => `attentionValueGrad: q ${shapeString(q.shape)}, dOut ${shapeString(dOut.shape)} for ${Hq}×${D}`);
    const [kRows, kWidth] = dims(k_);
    check(kWidth === Hkv * D && kRows >= kvLength, () => `attentionValueGrad: k ${shapeString(k_.shape)} for ${kvLength} rows of ${Hkv}×${D}`);
    check(Number.isInteger(qStart) && qStart >= 0 && Number.isInteger(kvLength) && kvLength >= 0, 'attentionValueGrad: bad qStart/kvLength');
    const dv = this.empty([kvLength, Hkv * D]);
    if (kvLength === 0) return dv;
    if (Tq === 0) {
      this.ctx.memset(dv.ptr, 0, dv.byteLength);
      return dv;
    }
    check(Math.ceil(Tq / LSE_ROWS) <= 65535 && Math.ceil(kvLength / LSE_ROWS) <= 65535, 'attentionValueGrad: too many rows for one launch');
    const ldl = Math.ceil(Tq / TILE_ROWS) * TILE_ROWS;
    const lse = this.ctx.alloc(Hq * ldl * 4); // [H_q, ldl] f32
    const scale = 1 / Math.sqrt(D);
    try {
      this.withInputs('attentionValueGrad', [[q, 'bf16'], [k_, 'bf16'], [dOut, 'bf16']], ([pq, pk, pd]) => {
        const common = [i32(Tq), i32(Hq), i32(Hkv), i32(qStart), i32(kvLength), f32(scale), i32(ldl)];
        this.launch('value_attention_dv', `value_attention_lse_d${D}`, [Hq, Math.ceil(Tq / LSE_ROWS), 1], [128, 1, 1], [
          ptr(pq!), ptr(pk!), ptr(lse.ptr), ...common,
        ], (LSE_ROWS + 2 * TILE_ROWS) * D * 2);
        this.launch('value_attention_dv', `value_attention_dv_d${D}`, [Hkv, Math.ceil(kvLength / LSE_ROWS), 1], [128, 1, 1], [
          ptr(pq!), ptr(pk!), ptr(pd!), ptr(lse.ptr), ptr(dv.ptr), ...common,
        ], (LSE_ROWS + 4 * TILE_ROWS) * D * 2 + 2 * TILE_ROWS * 4);
      });
    } finally {
      lse.free();
    }
    return dv;
  }

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    const n = numelOf(param);
    const [p, pm, pv] = [this.f32Out(param, n, 'adamw param'), this.f32Out(m, n, 'adamw m'), this.f32Out(v, n, 'adamw v')];
    check(numelOf(grad) === n && o.step >= 1, () => `adamw: grad ${shapeString(grad.shape)} for ${shapeString(param.shape)}, step ${o.step}`);
    const c1 = 1 - o.beta1 ** o.step;
    const c2 = 1 - o.beta2 ** o.step;
    this.withInputs('adamw', [[grad, 'f32']], ([pg]) => {
      this.launch('value_adamw', 'value_adamw_f32', [this.gridFor(n), 1, 1], [THREADS, 1, 1], [
        ptr(p.ptr), ptr(pg!), ptr(pm.ptr), ptr(pv.ptr), i64(n),
        f32(o.lr), f32(o.beta1), f32(o.beta2), f32(o.eps), f32(o.weightDecay), f32(c1), f32(c2),
      ]);
    });
  }

  sumSquares(x: Tensor): number {
    return this.sumOfSquares('sumSquares', x, undefined, undefined, 0);
  }

  scaleInPlace(x: Tensor, s: number): void {
    const t = this.f32Out(x, numelOf(x), 'scaleInPlace');
    this.launch('value_scale', 'value_scale_f32', [this.gridFor(t.numel), 1, 1], [THREADS, 1, 1], [ptr(t.ptr), i64(t.numel), f32(s)]);
  }

  /** Frees the cuBLASLt handle and workspace; the backend stays usable. */
  dispose(): void {
    this.blasLib?.dispose();
    this.blasLib = undefined;
  }

  // ---- helpers -------------------------------------------------------------------------------------------------

  /** Σ (a − b)² (b absent: Σ a²), with grad = twoScale·(a − b) when given; one sync to read the block sums. */
  private sumOfSquares(op: string, a: Tensor, b: Tensor | undefined, grad: CudaTensor | undefined, twoScale: number): number {
    const n = numelOf(a);
    if (n === 0) return 0;
    const ta = a.dtype === 'bf16' ? 'bf16' : 'f32';
    const tb = b?.dtype === 'bf16' ? 'bf16' : 'f32';
    const blocks = Math.min(Math.ceil(n / THREADS), 4 * this.ctx.info.smCount);
    const partial = this.ctx.alloc(blocks * 8);
    try {
      const inputs: [Tensor, 'f32' | 'bf16'][] = b ? [[a, ta], [b, tb]] : [[a, ta]];
      this.withInputs(op, inputs, ([pa, pb]) => {
        this.launch('value_squared_error', `value_squared_error_${ta}_${tb}`, [blocks, 1, 1], [THREADS, 1, 1], [
          ptr(partial.ptr), ptr(grad?.ptr ?? 0n), ptr(pa!), ptr(pb ?? 0n), i64(n), f32(twoScale),
        ]);
      });
      const sums = new Float64Array(blocks);
      this.ctx.download(new Uint8Array(sums.buffer), partial.ptr);
      let total = 0;
      for (const s of sums) total += s;
      return total;
    } finally {
      partial.free();
    }
  }

  /**
   * Runs `fn` with the device address of each tensor in the dtype asked for: tensors already in it as they are,
   * others through a temporary copy (k.cast), freed once `fn` has enqueued its work (one stream keeps the order).
   */
  private withInputs(op: string, inputs: [Tensor, 'f32' | 'bf16' | 'f16'][], fn: (ptrs: bigint[]) => void): void {
    const temps: DeviceBlock[] = [];
    try {
      const ptrs = inputs.map(([t, want]) => {
        const c = asCuda(t, this.backend.device, op);
        if (c.dtype === want) return c.ptr;
        if (!k.isFloatDType(c.dtype)) throw new CommvqError(`${op}: ${c.dtype} tensors are not supported (float dtypes only)`);
        const tmp = this.ctx.alloc(c.numel * (want === 'f32' ? 4 : 2));
        temps.push(tmp);
        k.cast(this.ctx, tmp.ptr, c.ptr, c.numel, c.dtype, want);
        return tmp.ptr;
      });
      fn(ptrs);
    } finally {
      for (const tmp of temps) tmp.free();
    }
  }

  private launch(module: string, name: string, grid: Dim3, block: Dim3, args: KernelArg[], sharedBytes = 0): void {
    this.ctx.launch(this.ctx.kernel(module, name), grid, block, sharedBytes, args);
  }

  /** Blocks of 256 threads for a grid-stride loop over n items (at most 8 per SM: enough to fill the GPU). */
  private gridFor(n: number): number {
    return Math.max(1, Math.min(Math.ceil(n / THREADS), 8 * this.ctx.info.smCount));
  }

  /** Row slices of the two-pass column sums: about 4 blocks per SM in all, at least 8 rows per slice. */
  private slicing(R: number, C: number): { slices: number; rowsPer: number } {
    const columnBlocks = Math.ceil(C / 32);
    const wanted = Math.ceil((4 * this.ctx.info.smCount) / columnBlocks);
    const rowsPer = Math.ceil(R / Math.max(1, Math.min(wanted, Math.ceil(R / ROWS_PER_SLICE_MIN))));
    return { slices: Math.ceil(R / rowsPer), rowsPer };
  }

  private tokenRows(op: string, w: Tensor, rho: Tensor, ls: Tensor): { T: number; D: number } {
    const D = numelOf(ls);
    const [T, width] = dims(w);
    check(width === D && numelOf(rho) === T, () => `${op}: w ${shapeString(w.shape)}, ρ ${shapeString(rho.shape)}, ls ${shapeString(ls.shape)}`);
    return { T, D };
  }

  /** A tensor updated in place: must be an f32 tensor of this backend with n elements. */
  private f32Out(t: Tensor, n: number, op: string): CudaTensor {
    const c = asCuda(t, this.backend.device, op);
    if (c.dtype !== 'f32') throw new CommvqError(`${op}: in-place update of a ${c.dtype} tensor: training state must be f32`);
    check(c.numel === n, () => `${op}: ${shapeString(c.shape)} where ${n} elements are needed`);
    return c;
  }

  private empty(shape: Shape): CudaTensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return new CudaTensor([...shape], 'f32', this.backend.device, this.ctx.alloc(n * 4));
  }

  private blas(): CublasLt | null {
    if (this.blasLib === undefined) this.blasLib = process.env['COMMVQ_GEMM'] === 'fallback' ? null : CublasLt.tryCreate(this.ctx);
    return this.blasLib;
  }
}

/** [rows, last dim] of a tensor (a vector is one row). */
function dims(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length === 0) return [1, 1];
  const last = s[s.length - 1]!;
  return [s.length === 1 ? 1 : s.slice(0, -1).reduce((a, b) => a * b, 1), last];
}

function numelOf(t: Tensor): number {
  return t.shape.reduce((a, b) => a * b, 1);
}
