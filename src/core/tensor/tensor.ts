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
 * Disposes a group of tensors (or anything else that owns device memory) together. Use it through `scoped` for
 * temporaries, or `allOrNothing` for what is being built: an out-of-memory error part way must leave nothing behind
 * (measure-memory runs trial after trial in one process).
 */
export class TensorScope {
  private readonly held: { dispose(): void }[] = [];

  keep<T extends { dispose(): void }>(t: T): T {
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

/**
 * `work` with a scope whose tensors are disposed only if it throws: what it builds is the caller's once it returns,
 * a half-built result is given back. `allOrNothing((s) => { const out = s.keep(b.zeros(…)); fill(out); return out; })`;
 * the scope itself may be the result's disposer (`dispose: () => s.dispose()`).
 */
export function allOrNothing<T>(work: (s: TensorScope) => T): T {
  const s = new TensorScope();
  try {
    return work(s);
  } catch (err) {
    s.dispose();
    throw err;
  }
}
