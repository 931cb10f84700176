import type { LlamaModel } from '../model/llama.js';
import type { Collective } from '../parallel/collective.js';
import type { GradientBucket } from './gradient-bucket.js';
import type { TrainOps } from './train-ops.js';
import { accumulateWindow, applyUpdate, windowLosses, zeroGradients, type LayerState, type OptimizerSettings, type StepLosses } from './value-trainer.js';

/**
 * One data-parallel train-value step over a global batch of windows: rank r of W runs windows
 * [r·B/W, (r+1)·B/W) of the B; the gradients (each window's mean) are summed over ranks, one buffer per layer,
 * started as soon as the rank's last window has passed that layer (so the sums run beside the later layers), and
 * divided by B; the loss sums and the stop flags are summed over ranks; then every rank takes the same clipped AdamW
 * step, so the parameters stay equal on all ranks without being sent. A window's Gumbel noise depends on its place in
 * the global batch (step·B + j), never on the rank that runs it.
 *
 * Tolerance across world sizes: the same global batch gives the same step on any W up to the order of f32 sums
 * (gradients summed per rank, then over ranks; NCCL's ring order on GPUs): losses agree within ~1e-6 relative per
 * step (f64 loss sums: within 1e-12), and the parameters drift apart only by that rounding as steps go on. At W = 1
 * with `SingleProcess` the step is bit for bit the one-process step (trainValueStep) for B = 1.
 */
export async function parallelStep(
  model: LlamaModel,
  ops: TrainOps,
  layers: Map<number, LayerState>,
  batch: Int32Array[],
  stepIndex: number,
  o: OptimizerSettings & { seed: number },
  dp: { collective: Collective; bucket: GradientBucket; stop: boolean },
): Promise<{ losses: StepLosses; stop: boolean }> {
  const { rank, worldSize } = dp.collective;
  const B = batch.length;
  const per = B / worldSize;
  if (!Number.isInteger(per)) throw new Error(`parallelStep: ${B} windows do not split over ${worldSize} ranks`);
  zeroGradients(ops, layers);
  let valueSum = 0;
  let attnSum = 0;
  const last = (rank + 1) * per - 1;
  for (let j = rank * per; j <= last; j++) {
    // in the rank's last window a layer's gradients are final once the pass leaves it: its sum starts there
    const onLayerDone = j === last ? (layer: number) => dp.bucket.start(dp.collective, layer) : undefined;
    const s = accumulateWindow(model, ops, layers, batch[j]!, stepIndex * B + j, { seed: o.seed, onLayerDone });
    valueSum += s.valueSum;
    attnSum += s.attnSum;
  }
  await dp.bucket.finishMean(dp.collective, B);
  const [v, a, stops] = await dp.collective.allReduceHost(new Float64Array([valueSum, attnSum, dp.stop ? 1 : 0]));
  const { gradNorm, lr } = applyUpdate(ops, layers, stepIndex, o);
  return { losses: { ...windowLosses({ valueSum: v!, attnSum: a! }, B, layers.size), gradNorm, lr }, stop: stops! > 0 };
}
