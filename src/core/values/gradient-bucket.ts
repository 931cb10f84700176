import type { Collective } from '../parallel/collective.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainOps } from './train-ops.js';
import { PARAM_NAMES } from './value-compressor.js';
import type { LayerState } from './value-trainer.js';

/**
 * Every trainable gradient of a step in one flat f32 buffer [n, 1] (layers in order, then PARAM_NAMES), so a step
 * costs one all-reduce rather than one per tensor: copy in, sum over ranks, scale to the mean, copy back. The copies
 * are exact, and at world size 1 with `divisor` 1 the whole round trip leaves every gradient bit for bit as it was.
 *
 *   const bucket = new GradientBucket(ops, layers);
 *   await bucket.reduceMean(collective, windowsPerStep);  // grads ← Σ_ranks grads / windowsPerStep
 */
export class GradientBucket {
  private readonly grads: Tensor[];
  private readonly flat: Tensor;

  constructor(
    private readonly ops: TrainOps,
    layers: Map<number, LayerState>,
  ) {
    this.grads = [...layers.values()].flatMap((s) => PARAM_NAMES.map((n) => s.grads[n]));
    const n = this.grads.reduce((a, g) => a + g.shape.reduce((x, y) => x * y, 1), 0);
    this.flat = ops.backend.zeros([n, 1], 'f32'); // [n, 1]: writeRows and sliceRows address it element by element
  }

  async reduceMean(collective: Collective, divisor: number): Promise<void> {
    const b = this.ops.backend;
    let at = 0;
    for (const g of this.grads) {
      b.writeRows(this.flat, at, g);
      at += g.shape.reduce((x, y) => x * y, 1);
    }
    await collective.allReduceSum(this.flat);
    if (divisor !== 1) this.ops.scaleInPlace(this.flat, 1 / divisor);
    at = 0;
    for (const g of this.grads) {
      const n = g.shape.reduce((x, y) => x * y, 1);
      const part = b.sliceRows(this.flat, at, at + n);
      b.writeRows(g, 0, part);
      part.dispose();
      at += n;
    }
  }

  dispose(): void {
    this.flat.dispose();
  }
}
