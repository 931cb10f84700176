import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { CublasLt } from '../cublas.js';
import { emptyTensor } from '../cuda-tensor.js';
import { f32, i32, i64, ptr, type CudaContextLike } from '../kernels.js';
import type { CacheRows } from './commvq-cache.js';
import { launchPackValueArgmax } from './commvq-cache.js';
import { alignedPtr, expectElements, tensorArg } from './tensor-args.js';
import { gridFor, matmul } from './value-train.js';

/**
 * The argmax value encoder of the device CommVQ cache, at inference (spec §5.3 with no noise, then the pack of
 * kernels/commvq_pack.cu): values bf16 [n, D] of one sequence → its packed bits and ρ′ in rows rowStart + t.
 *
 *   x  = LayerNorm(prescale(v))              bf16 [n, D]        kernels/value_encode_norm.cu (ρ f32 [n] on the side)
 *   h  = x · w1ᵀ                             f32 [n, inter]     cuBLASLt, bf16 tensor cores, f32 accumulation
 *   a  = GELU(h + b1)                        bf16 [n, inter]    kernels/value_gelu.cu (value_bias_gelu_bf16)
 *   ℓ  = a · w2ᵀ                             f32 [n, 4·n_e]     cuBLASLt as above
 *   bits = argmax per 4-way group of ℓ + b2, packed; ρ′ from ‖bits·E‖   kernels/commvq_pack.cu
 *
 * The training path (TrainOps.encodeValues) runs the same steps in f32 with TF32 GEMMs and hands over [n, N_c] f32
 * bits; here the two GEMMs read bf16 — w1 and w2 are bf16 in the cache already, so only x and a round — which runs
 * the GEMMs at bf16 tensor-core speed and writes a third of the bytes. What that rounding costs against the method's
 * own error is measured in test/gpu/value-encode.test.ts. Nothing synchronizes; temporaries come from the context's
 * caching allocator and are freed after their last launch.
 *
 *   launchEncodeValuesArgmax(ctx, blas, { values, scale, encoder, codebook, valueBits, valueRho }, { sequence: 0, rowStart: 0, tokens: 4096 });
 */
export function launchEncodeValuesArgmax(
  ctx: CudaContextLike,
  blas: CublasLt | null,
  p: { values: Tensor; scale: Tensor; encoder: ArgmaxEncoder; codebook: Tensor; valueBits: Tensor; valueRho: Tensor },
  rows: CacheRows,
): void {
  const op = 'encodeValuesArgmax';
  const { w1, w2, b1, b2, lnGamma, lnBeta } = p.encoder;
  const [inter, D] = tensorArg(ctx, op, 'w1', w1, 'bf16').shape as [number, number];
  const [embed] = tensorArg(ctx, op, 'w2', w2, 'bf16', [-1, inter]).shape as [number];
  const n = rows.tokens;
  const v = tensorArg(ctx, op, 'values', p.values, 'bf16', [n, D]);
  const vector = (name: string, t: Tensor, size: number) => {
    const c = tensorArg(ctx, op, name, t, 'f32');
    expectElements(op, name, c, size);
    return c;
  };
  const [ls, gamma, beta, bias1] = [vector('scale', p.scale, D), vector('lnGamma', lnGamma, D), vector('lnBeta', lnBeta, D), vector('b1', b1, inter)];
  vector('b2', b2, embed);
  if (inter % 4 !== 0) throw new CommvqError(`${op}: the encoder's width ${inter} is not a multiple of 4`);
  if (n === 0) return;
  const x = emptyTensor(ctx, [n, D], 'bf16');
  const rho = emptyTensor(ctx, [n], 'f32');
  const h = emptyTensor(ctx, [n, inter], 'f32');
  const a = emptyTensor(ctx, [n, inter], 'bf16');
  const logits = emptyTensor(ctx, [n, embed], 'f32');
  try {
    ctx.launch(ctx.kernel('value_encode_norm', 'value_encode_norm'), [n, 1, 1], [THREADS, 1, 1], D * 4, [
      ptr(x.ptr), ptr(rho.ptr), ptr(alignedPtr(op, 'values', v, 2)), ptr(ls.ptr), ptr(gamma.ptr), ptr(beta.ptr),
      i32(D), f32(LAYER_NORM_EPS),
    ]);
    matmul(ctx, blas, h, x, w1, { M: n, N: inter, K: D, transA: false, transB: true, input: 'bf16', accumulate: false });
    ctx.launch(ctx.kernel('value_gelu', 'value_bias_gelu_bf16'), [gridFor(ctx, (n * inter) / 4), 1, 1], [THREADS, 1, 1], 0, [
      ptr(a.ptr), ptr(h.ptr), ptr(bias1.ptr), i64(n * inter), i32(inter),
    ]);
    matmul(ctx, blas, logits, a, w2, { M: n, N: embed, K: inter, transA: false, transB: true, input: 'bf16', accumulate: false });
    launchPackValueArgmax(ctx, { logits, bias: b2, rho, codebook: p.codebook, valueBits: p.valueBits, valueRho: p.valueRho }, rows);
  } finally {
    [x, rho, h, a, logits].forEach((t) => t.dispose()); // the caching allocator hands them out only to later work
  }
}

/** What the argmax encoder reads of a layer's value encoder: w1, w2 bf16 as the device cache keeps them, the rest f32. */
export interface ArgmaxEncoder {
  lnGamma: Tensor; // [D]
  lnBeta: Tensor; // [D]
  w1: Tensor; // bf16 [inter, D]
  b1: Tensor; // [inter]
  w2: Tensor; // bf16 [4·n_e, inter]
  b2: Tensor; // [4·n_e]
}

/** nn.LayerNorm's default, as the reference's encoder uses it (value_compressor.ts encodeLogits). */
const LAYER_NORM_EPS = 1e-5;
/** Threads per block (value-train.ts's gridFor sizes its grids for this). */
const THREADS = 256;
