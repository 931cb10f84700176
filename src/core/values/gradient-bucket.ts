import type { Collective } from '../parallel/collective.js';
import { numel } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainOps } from './train-ops.js';
import { PARAM_NAMES } from './value-compressor.js';
import type { LayerState } from './value-trainer.js';

/**
 * A step's trainable gradients in one flat f32 buffer per layer ([n, 1], PARAM_NAMES in order), so a step costs one
 * all-reduce per layer rather than one per tensor: copy in, sum over ranks, scale to the mean, copy back. A layer's
 * gradients are final as soon as the pass has gone through it (training is layer-local), so its sum can start then
 * and run while later layers compute; `finishMean` waits for all of them. The copies are exact, and at world size 1
 * with `divisor` 1 the round trip leaves every gradient bit for bit as it was.
 *
 *   const bucket = new GradientBucket(ops, layers);
 *   bucket.start(collective, layer);                  // per layer, once its last window of the step is done
 *   await bucket.finishMean(collective, windows);     // grads ← Σ_ranks grads / windows, every layer
 */
export class GradientBucket {
  private readonly layers: Map<number, { grads: Tensor[]; flat: Tensor }>;
  private readonly started = new Set<number>();

  constructor(
    private readonly ops: TrainOps,
    layers: Map<number, LayerState>,
  ) {
    this.layers = new Map(
      [...layers].map(([layer, s]) => {
        const grads = PARAM_NAMES.map((n) => s.grads[n]);
        const n = grads.reduce((a, g) => a + numel(g.shape), 0);
        return [layer, { grads, flat: ops.backend.zeros([n, 1], 'f32') }]; // [n, 1]: writeRows addresses it by element
      }),
    );
  }

  /** Copies `layer`'s gradients into its buffer and starts their sum over ranks. Every rank starts the same layers in the same order. */
  start(collective: Collective, layer: number): void {
    const entry = this.layers.get(layer);
    if (!entry) throw new Error(`GradientBucket: layer ${layer} is not trained`);
    if (this.started.has(layer)) throw new Error(`GradientBucket: layer ${layer} started twice in one step`);
    let at = 0;
    for (const g of entry.grads) {
      this.ops.backend.writeRows(entry.flat, at, g);
      at += numel(g.shape);
    }
    collective.startAllReduceSum(entry.flat);
    this.started.add(layer);
  }

  /** Starts the layers not yet started (in the order of `layers`), waits for every sum, and writes grads ← sum / divisor. */
  async finishMean(collective: Collective, divisor: number): Promise<void> {
    for (const layer of this.layers.keys()) if (!this.started.has(layer)) this.start(collective, layer);
    await collective.settle();
    const b = this.ops.backend;
    for (const { grads, flat } of this.layers.values()) {
      if (divisor !== 1) this.ops.scaleInPlace(flat, 1 / divisor);
      let at = 0;
      for (const g of grads) {
        const n = numel(g.shape);
        const part = b.sliceRows(flat, at, at + n);
        b.writeRows(g, 0, part);
        part.dispose();
        at += n;
      }
    }
    this.started.clear();
  }

  dispose(): void {
    for (const { flat } of this.layers.values()) flat.dispose();
  }
}
