import type { DType, HostArray } from '../../tensor/dtype.js';
import { numel, shapeString, type Shape } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';

/** A tensor in host memory: `data` holds numel(shape) elements of `dtype` (16-bit floats as bits). */
export class CpuTensor implements Tensor {
  readonly device = 'cpu';

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    readonly data: HostArray,
    private release: () => void = () => {},
  ) {
    if (data.length !== numel(shape)) {
      throw new Error(`CpuTensor: ${data.length} elements do not fill shape ${shapeString(shape)}`);
    }
  }

  /** Host memory is garbage collected; disposing only tells the backend's byte counter (once). */
  dispose(): void {
    this.release();
    this.release = () => {};
  }
}

/** Narrows a Tensor to a CpuTensor, refusing tensors of other backends. */
export function asCpu(t: Tensor): CpuTensor {
  if (!(t instanceof CpuTensor)) throw new Error(`expected a cpu tensor, got one on ${t.device}`);
  return t;
}
