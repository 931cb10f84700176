import { CommvqError } from '../../errors.js';
import { bytesPerElement, type DType } from '../../tensor/dtype.js';
import { numel, shapeString, type Shape } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { CudaContextLike, DeviceBlock } from './kernels.js';

/**
 * A tensor in device memory, row-major, `numel(shape)` elements of `dtype`: one block from the caching allocator
 * (its owner; `dispose()` returns the block), or a view of part of another tensor's memory (`view`, `rows`, `at`:
 * its own shape and dtype at a byte offset, no memory of its own, `dispose()` frees nothing). A view reads its base's
 * address at each use, so a view of a disposed tensor fails as the tensor itself does.
 *
 *   const packed = emptyTensor(ctx, [bytes], 'u8');            // one allocation for several arrays
 *   const norms = packed.view(4096, [B, capacity], 'bf16');    // bf16 [B, capacity] from byte 4096 on
 *   const seq1 = norms.at(1);                                  // bf16 [capacity]: sequence 1
 *   const rows = norms.rows(1, 2);                             // bf16 [2, capacity]: sequences 1 and 2
 */
export class CudaTensor implements Tensor {
  private block: DeviceBlock | undefined;

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    readonly device: string,
    block: DeviceBlock,
  ) {
    this.block = block;
  }

  /** The device address of element 0. */
  get ptr(): bigint {
    if (!this.block) throw new Error(`use of a disposed ${this.dtype} tensor [${this.shape.join(', ')}]`);
    return this.block.ptr;
  }

  get numel(): number {
    return numel(this.shape);
  }

  get byteLength(): number {
    return this.numel * bytesPerElement(this.dtype);
  }

  /**
   * A view of this tensor's bytes [byteOffset, byteOffset + numel(shape)·size(dtype)) as a `dtype` tensor of `shape`;
   * it must lie inside this tensor and start on an element boundary of `dtype`.
   */
  view(byteOffset: number, shape: Shape, dtype: DType = this.dtype): CudaTensor {
    const bytes = numel(shape) * bytesPerElement(dtype);
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset + bytes > this.byteLength) {
      throw new CommvqError(`a view of ${bytes} bytes at byte ${byteOffset} lies outside a ${this.dtype} tensor [${this.shape.join(', ')}] of ${this.byteLength}`);
    }
    if (byteOffset % bytesPerElement(dtype) !== 0) throw new CommvqError(`a ${dtype} view at byte ${byteOffset} is not aligned to its elements`);
    const base = this;
    const block: DeviceBlock = { get ptr() { return base.ptr + BigInt(byteOffset); }, bytes, free: () => undefined };
    return new CudaTensor([...shape], dtype, this.device, block);
  }

  /** Rows [start, start + count) of dimension 0 as a view: shape [count, ...shape.slice(1)]. */
  rows(start: number, count: number): CudaTensor {
    const total = this.shape[0] ?? 1;
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > total) {
      throw new CommvqError(`rows ${start}..${start + count} outside a tensor [${this.shape.join(', ')}]`);
    }
    const rowBytes = total === 0 ? 0 : this.byteLength / total;
    return this.view(start * rowBytes, [count, ...this.shape.slice(1)]);
  }

  /** The sub-tensor at leading indices, as a view: `t.at(r, g)` of t [R, G, N] is t[r][g], of shape [N]. */
  at(...indices: number[]): CudaTensor {
    let offset = 0;
    let stride = this.byteLength;
    indices.forEach((index, dim) => {
      const size = this.shape[dim];
      if (size === undefined || !Number.isInteger(index) || index < 0 || index >= size) {
        throw new CommvqError(`index [${indices.join(', ')}] outside a tensor [${this.shape.join(', ')}]`);
      }
      stride /= size;
      offset += index * stride;
    });
    return this.view(offset, this.shape.slice(indices.length));
  }

  /** Returns the memory to the allocator's cache (a view frees nothing); later use of the tensor is an error. */
  dispose(): void {
    this.block?.free();
    this.block = undefined;
  }
}

/** Narrows a Tensor to a CudaTensor of `device`, refusing tensors of other backends. */
export function asCuda(t: Tensor, device: string, op: string): CudaTensor {
  if (!(t instanceof CudaTensor) || t.device !== device) {
    throw new CommvqError(`${op}: expected a tensor on ${device}, got one on ${t.device}`);
  }
  return t;
}

/** `cuda:N`: the device name of the tensors of ctx's GPU. */
export function deviceOf(ctx: Pick<CudaContextLike, 'info'>): string {
  return `cuda:${ctx.info.ordinal}`;
}

/** A new uninitialised tensor from ctx's allocator; the caller owns it. */
export function emptyTensor(ctx: Pick<CudaContextLike, 'info' | 'alloc'>, shape: Shape, dtype: DType): CudaTensor {
  return new CudaTensor([...shape], dtype, deviceOf(ctx), ctx.alloc(numel(shape) * bytesPerElement(dtype)));
}

/** A view of any tensor of this backend: `CudaTensor.view` for a `Tensor`. */
export function tensorView(t: Tensor, byteOffset: number, shape: Shape, dtype: DType = t.dtype): CudaTensor {
  return asCuda(t, t.device, `a view of a ${t.dtype} tensor ${shapeString(t.shape)}`).view(byteOffset, shape, dtype);
}

/** Rows [start, start + count) of any tensor of this backend: `CudaTensor.rows` for a `Tensor`. */
export function rowView(t: Tensor, start: number, count: number): CudaTensor {
  return asCuda(t, t.device, `rows of a ${t.dtype} tensor ${shapeString(t.shape)}`).rows(start, count);
}
