import { CommvqError } from '../../../errors.js';
import { shapeString } from '../../../tensor/shape.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { asCuda, deviceOf, type CudaTensor } from '../cuda-tensor.js';
import type { CudaContextLike } from '../kernels.js';

/**
 * The context's copies on typed tensors (whole tensors or views of them), stream-ordered like every launch: host ↔
 * device in the tensor's raw bytes, device ↔ device, byte fill. Byte counts must match exactly.
 *
 *   uploadTo(ctx, idx, new Int32Array(indices));       // i32 [4096] ← host
 *   const hard = downloadFrom(ctx, stats.view(at, [1]), new Float32Array(1));
 */

type Ctx = Pick<CudaContextLike, 'info' | 'copy' | 'memset' | 'upload' | 'download'>;

function own(ctx: Ctx, t: Tensor, op: string): CudaTensor {
  return asCuda(t, deviceOf(ctx), op);
}

function sameBytes(op: string, t: CudaTensor, bytes: number): void {
  if (t.byteLength !== bytes) throw new CommvqError(`${op}: ${bytes} bytes for a ${t.dtype} tensor ${shapeString(t.shape)} of ${t.byteLength}`);
}

/** Copies host `src` (raw bytes of dst's dtype) into `dst`; returns once the host bytes were read. */
export function uploadTo(ctx: Ctx, dst: Tensor, src: ArrayBufferView): void {
  const d = own(ctx, dst, 'uploadTo');
  sameBytes('uploadTo', d, src.byteLength);
  ctx.upload(d.ptr, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
}

/** Waits for the stream, then copies `src`'s raw bytes into host `dst`, and returns it. */
export function downloadFrom<T extends ArrayBufferView>(ctx: Ctx, src: Tensor, dst: T): T {
  const s = own(ctx, src, 'downloadFrom');
  sameBytes('downloadFrom', s, dst.byteLength);
  ctx.download(new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), s.ptr);
  return dst;
}

/** Enqueues dst ← src, byte for byte (the same byte length; dtypes may differ, e.g. θ into a θ handle). */
export function copyInto(ctx: Ctx, dst: Tensor, src: Tensor): void {
  const d = own(ctx, dst, 'copyInto');
  const s = own(ctx, src, 'copyInto');
  sameBytes('copyInto', d, s.byteLength);
  ctx.copy(d.ptr, s.ptr, s.byteLength);
}

/** Enqueues setting every byte of `t` to `byte` (0xff: NaN guards in tests). */
export function fillBytes(ctx: Ctx, t: Tensor, byte: number): void {
  const c = own(ctx, t, 'fillBytes');
  ctx.memset(c.ptr, byte, c.byteLength);
}

/** Enqueues setting every byte of `t` to 0. */
export function zeroFill(ctx: Ctx, t: Tensor): void {
  fillBytes(ctx, t, 0);
}
