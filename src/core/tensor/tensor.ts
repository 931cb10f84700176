import type { DType } from './dtype.js';
import type { Shape } from './shape.js';

/**
 * A tensor owned by one backend. Its storage may be host memory (CPU backend) or device memory (CUDA backend);
 * only its backend reads it. Whoever creates a tensor owns it and calls `dispose()` when done (a no-op on the CPU,
 * it returns the block to the caching allocator on the GPU).
 */
export interface Tensor {
  readonly shape: Shape;
  readonly dtype: DType;
  /** The device name of the backend that owns it: `cpu`, `cuda:0`, ... */
  readonly device: string;
  dispose(): void;
}

/** Disposes a group of tensors together: `const s = new TensorScope(); const x = s.keep(op(...)); ...; s.dispose()`. */
export class TensorScope {
  private readonly held: Tensor[] = [];

  keep<T extends Tensor>(t: T): T {
    this.held.push(t);
    return t;
  }

  dispose(): void {
    for (const t of this.held.splice(0)) t.dispose();
  }
}
