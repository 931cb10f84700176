import { CommvqError } from '../../errors.js';
import { bytesPerElement, type DType } from '../../tensor/dtype.js';
import { numel, type Shape } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { DeviceBlock } from './kernels.js';

/** A tensor in device memory: one block from the caching allocator, row-major, `numel(shape)` elements of `dtype`. */
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

  /** Returns the memory to the allocator's cache; later use of the tensor is an error. */
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
