import { CommvqError } from '../../../errors.js';
import type { DType } from '../../../tensor/dtype.js';
import { numel, shapeString, type Shape } from '../../../tensor/shape.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { asCuda, deviceOf, type CudaTensor } from '../cuda-tensor.js';
import type { CudaContextLike } from '../kernels.js';

/**
 * The checks every launcher makes on the tensors and numbers it is given, with one message form:
 * `<op>: <argument> ...` (a CommvqError), before anything is launched.
 *
 *   const out = tensorArg(ctx, 'commvq_dequant_keys', 'out', t, 'bf16', [n, G * D]);
 */

/**
 * `t` as a CudaTensor of ctx's GPU, after checking its dtype (one of `dtypes`) and, when given, its shape (a number
 * in `shape` must match, `-1` matches any size).
 */
export function tensorArg(ctx: Pick<CudaContextLike, 'info'>, op: string, name: string, t: Tensor, dtypes: DType | readonly DType[], shape?: Shape): CudaTensor {
  const c = asCuda(t, deviceOf(ctx), `${op}: ${name}`);
  const allowed = typeof dtypes === 'string' ? [dtypes] : dtypes;
  if (!allowed.includes(c.dtype)) throw new CommvqError(`${op}: ${name} is ${c.dtype}, expected ${allowed.join(' or ')}`);
  if (shape) expectShape(op, name, c, shape);
  return c;
}

/** Checks `t`'s shape against `shape` (`-1` matches any size). */
export function expectShape(op: string, name: string, t: Tensor, shape: Shape): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok) throw new CommvqError(`${op}: ${name} has shape ${shapeString(t.shape)}, expected [${shape.map((d) => (d === -1 ? '*' : d)).join(', ')}]`);
}

/** Checks that `t` holds at least `n` elements (a buffer read or written up to element n). */
export function expectElements(op: string, name: string, t: Tensor, n: number): void {
  if (numel(t.shape) < n) throw new CommvqError(`${op}: ${name} ${shapeString(t.shape)} holds ${numel(t.shape)} elements, ${n} are needed`);
}

/** The device address of `t`, refused when null or not on a `bytes` boundary. */
export function alignedPtr(op: string, name: string, t: CudaTensor, bytes: number): bigint {
  const p = t.ptr;
  if (p === 0n) throw new CommvqError(`${op}: ${name} is a null pointer`);
  if (p % BigInt(bytes) !== 0n) throw new CommvqError(`${op}: ${name} is not ${bytes}-byte aligned`);
  return p;
}

/** Checks that `v` is an integer ≥ `min`. */
export function intArg(op: string, name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new CommvqError(`${op}: ${name} must be an integer ≥ ${min}, got ${v}`);
}
