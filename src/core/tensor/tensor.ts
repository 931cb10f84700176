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

/**
 * Disposes a group of tensors together. Use it through `scoped`, which disposes them however the work ends: an
 * out-of-memory error part way must not leave the temporaries behind (measure-memory runs trial after trial).
 */
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

/** `work` with a scope whose tensors are disposed when it returns or throws: `scoped((s) => { const x = s.keep(op(…)); … })`. */
export function scoped<T>(work: (s: TensorScope) => T): T {
  const s = new TensorScope();
  try {
    return work(s);
  } finally {
    s.dispose();
  }
}
