import type { AttentionShape } from '../backend/backend.js';
import type { CudaContext } from '../backend/cuda/context.js';
import { CublasLt } from '../backend/cuda/cublas.js';
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { asCuda, emptyTensor, type CudaTensor } from '../backend/cuda/cuda-tensor.js';
import { zeroFill } from '../backend/cuda/ops/copies.js';
import { withDTypes, type FloatDType } from '../backend/cuda/ops/model.js';
import * as k from '../backend/cuda/ops/value-train.js';
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

/**
 * TrainOps on the GPU: kernels/value_*.cu for everything but the GEMMs, cuBLASLt for those (bf16 inputs with f32
 * accumulation by default, see MatmulPrecision), a flash-style kernel for attentionValueGrad, all launched through
 * backend/cuda/ops/value-train.ts. Tensors are f32 on the device; inputs documented as "any float dtype" (v, q, k, the
 * operands of matmul and squaredError) may be bf16. Reductions (sumRowsInto, layerNormParamGrad, squaredError,
 * sumSquares) add in a fixed order: the same inputs give the same bits on every run. Tested against CpuTrainOps in
 * test/gpu/train-ops.test.ts. One owner: `dispose()` frees its cuBLASLt handle and workspace (tensors it returns
 * belong to the caller).
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
      if (!o.accumulate) zeroFill(this.ctx, out);
      return out;
    }
    const input = this.precision === 'bf16' ? 'bf16' : 'f32';
    this.withInputs('matmul', [[a, input], [b, input]], ([pa, pb]) => {
      k.matmul(this.ctx, this.blas(), out, pa!, pb!, { M, N, K, transA: !!o.transA, transB: !!o.transB, input, accumulate: !!o.accumulate });
    });
    return out;
  }

  addBias(x: Tensor, bias: Tensor): Tensor {
    const [R, C] = dims(x);
    check(numelOf(bias) === C, () => `addBias: bias ${shapeString(bias.shape)} for rows of ${C}`);
    const out = this.empty(x.shape);
    const xType = x.dtype === 'bf16' ? 'bf16' : 'f32';
    this.withInputs('addBias', [[x, xType], [bias, 'f32']], ([px, pb]) => k.addBias(this.ctx, out, px!, pb!));
    return out;
  }

  sumRowsInto(x: Tensor, into: Tensor): void {
    const [R, C] = dims(x);
    const dst = this.f32Out(into, C, 'sumRowsInto');
    if (R === 0 || C === 0) return;
    this.withInputs('sumRowsInto', [[x, 'f32']], ([px]) => k.sumRowsInto(this.ctx, dst, px!));
  }

  prescale(v: Tensor, ls: Tensor): { uhat: Tensor; rho: Tensor } {
    const D = numelOf(ls);
    const [T, width] = dims(v);
    check(width === D, () => `prescale: v ${shapeString(v.shape)} for a scale of ${D}`);
    const uhat = this.empty([T, D]);
    const rho = this.empty([T]);
    const vType = v.dtype === 'bf16' || v.dtype === 'f16' ? v.dtype : 'f32';
    this.withInputs('prescale', [[v, vType], [ls, 'f32']], ([pv, pl]) => k.prescale(this.ctx, uhat, rho, pv!, pl!));
    return { uhat, rho };
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): { y: Tensor; xhat: Tensor } {
    const [R, C] = dims(x);
    check(numelOf(gamma) === C && numelOf(beta) === C, () => `layerNorm: γ, β for rows of ${C}`);
    const y = this.empty(x.shape);
    const xhat = this.empty(x.shape);
    this.withInputs('layerNorm', [[x, 'f32'], [gamma, 'f32'], [beta, 'f32']], ([px, pg, pb]) => k.layerNorm(this.ctx, y, xhat, px!, pg!, pb!, eps));
    return { y, xhat };
  }

  layerNormParamGrad(dy: Tensor, xhat: Tensor, dGamma: Tensor, dBeta: Tensor): void {
    const [R, C] = dims(dy);
    check(numelOf(xhat) === R * C, () => `layerNormParamGrad: x̂ ${shapeString(xhat.shape)} for dy ${shapeString(dy.shape)}`);
    const dg = this.f32Out(dGamma, C, 'layerNormParamGrad dGamma');
    const db = this.f32Out(dBeta, C, 'layerNormParamGrad dBeta');
    if (R === 0 || C === 0) return;
    this.withInputs('layerNormParamGrad', [[dy, 'f32'], [xhat, 'f32']], ([pd, px]) => k.layerNormParamGrad(this.ctx, dg, db, pd!, px!));
  }

  gelu(x: Tensor): Tensor {
    const out = this.empty(x.shape);
    this.withInputs('gelu', [[x, 'f32']], ([px]) => k.gelu(this.ctx, out, px!));
    return out;
  }

  geluBackward(dy: Tensor, x: Tensor): Tensor {
    check(numelOf(dy) === numelOf(x), () => `geluBackward: dy ${shapeString(dy.shape)} for x ${shapeString(x.shape)}`);
    const out = this.empty(x.shape);
    this.withInputs('geluBackward', [[dy, 'f32'], [x, 'f32']], ([pd, px]) => k.geluBackward(this.ctx, out, pd!, px!));
    return out;
  }

  gumbelBits(logits: Tensor, tau: number, noise: GumbelNoise): { bits: Tensor; soft: Tensor } {
    const [T, W] = dims(logits);
    check(W % 4 === 0, () => `gumbelBits: rows of ${W} logits are not whole 4-way groups`);
    check(tau > 0, 'gumbelBits: τ must be positive');
    const bits = this.empty([T, W / 2]);
    const soft = this.empty([T, W]);
    // gumbelNoise(seed, stream, i) = f(mix32(key ^ i)) with key = mix32(mix32(seed) ^ stream), as in train-ops.ts
    const key = noise === 'argmax' ? 0 : mix32((mix32(noise.seed >>> 0) ^ noise.stream) >>> 0);
    this.withInputs('gumbelBits', [[logits, 'f32']], ([pl]) => k.gumbelBits(this.ctx, bits, soft, pl!, tau, key, noise !== 'argmax'));
    return { bits, soft };
  }

  gumbelBitsBackward(dBits: Tensor, soft: Tensor, tau: number, dLogits: Tensor): void {
    const groups = numelOf(soft) / 4;
    check(Number.isInteger(groups) && numelOf(dBits) === 2 * groups, () => `gumbelBitsBackward: dBits ${shapeString(dBits.shape)} for soft ${shapeString(soft.shape)}`);
    const out = this.f32Out(dLogits, 4 * groups, 'gumbelBitsBackward dLogits');
    this.withInputs('gumbelBitsBackward', [[dBits, 'f32'], [soft, 'f32']], ([pd, ps]) => k.gumbelBitsBackward(this.ctx, out, pd!, ps!, tau));
  }

  decode(w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    this.tokenRows('decode', w, rho, ls);
    const out = this.empty(w.shape);
    this.withInputs('decode', [[w, 'f32'], [rho, 'f32'], [ls, 'f32']], ([pw, pr, pl]) => k.decode(this.ctx, out, pw!, pr!, pl!));
    return out;
  }

  decodeBackward(dvhat: Tensor, w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    const { T, D } = this.tokenRows('decodeBackward', w, rho, ls);
    check(numelOf(dvhat) === T * D, () => `decodeBackward: dv̂ ${shapeString(dvhat.shape)} for w ${shapeString(w.shape)}`);
    const out = this.empty(w.shape);
    this.withInputs('decodeBackward', [[dvhat, 'f32'], [w, 'f32'], [rho, 'f32'], [ls, 'f32']], ([pd, pw, pr, pl]) => k.decodeBackward(this.ctx, out, pd!, pw!, pr!, pl!));
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
      zeroFill(this.ctx, dv);
      return dv;
    }
    this.withInputs('attentionValueGrad', [[q, 'bf16'], [k_, 'bf16'], [dOut, 'bf16']], ([pq, pk, pd]) => k.attentionValueGrad(this.ctx, dv, pq!, pk!, pd!, s));
    return dv;
  }

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    const n = numelOf(param);
    const [p, pm, pv] = [this.f32Out(param, n, 'adamw param'), this.f32Out(m, n, 'adamw m'), this.f32Out(v, n, 'adamw v')];
    check(numelOf(grad) === n && o.step >= 1, () => `adamw: grad ${shapeString(grad.shape)} for ${shapeString(param.shape)}, step ${o.step}`);
    const c1 = 1 - o.beta1 ** o.step;
    const c2 = 1 - o.beta2 ** o.step;
    this.withInputs('adamw', [[grad, 'f32']], ([pg]) => k.adamw(this.ctx, p, pg!, pm, pv, { ...o, c1, c2 }));
  }

  sumSquares(x: Tensor): number {
    return this.sumOfSquares('sumSquares', x, undefined, undefined, 0);
  }

  scaleInPlace(x: Tensor, s: number): void {
    k.scaleInPlace(this.ctx, this.f32Out(x, numelOf(x), 'scaleInPlace'), s);
  }

  /** Frees the cuBLASLt handle and workspace; the backend stays usable. */
  dispose(): void {
    this.blasLib?.dispose();
    this.blasLib = undefined;
  }

  // ---- helpers -------------------------------------------------------------------------------------------------

  /** Σ (a − b)² (b absent: Σ a²), with grad = twoScale·(a − b) when given; one sync to read the block sums. */
  private sumOfSquares(op: string, a: Tensor, b: Tensor | undefined, grad: CudaTensor | undefined, twoScale: number): number {
    if (numelOf(a) === 0) return 0;
    const ta = a.dtype === 'bf16' ? 'bf16' : 'f32';
    const tb = b?.dtype === 'bf16' ? 'bf16' : 'f32';
    const inputs: [Tensor, FloatDType][] = b ? [[a, ta], [b, tb]] : [[a, ta]];
    return this.withInputs(op, inputs, ([pa, pb]) => k.sumOfSquares(this.ctx, pa!, pb, grad, twoScale));
  }

  /**
   * Runs `fn` with each tensor in the dtype asked for: tensors already in it as they are, others through a temporary
   * copy (ops/model.ts cast), freed once `fn` has enqueued its work (one stream keeps the order).
   */
  private withInputs<T>(op: string, inputs: [Tensor, FloatDType][], fn: (ts: CudaTensor[]) => T): T {
    return withDTypes(this.ctx, op, inputs, fn);
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
    return emptyTensor(this.ctx, shape, 'f32');
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
