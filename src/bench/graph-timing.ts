import type { CudaContext } from '../core/backend/cuda/context.js';
import { CudaTimer } from '../core/backend/cuda/timing.js';

/**
 * Median milliseconds of one step, as the decode-attention benchmarks time it: the step once (warm-up, and anything it
 * allocates on first use), then `reps` replays of a CUDA graph of `steps` back-to-back steps after two warm-up
 * replays, each replay's time divided by `steps`. Launch overhead is the graph's, as in a real decode loop.
 *
 *   const ms = medianStepMs(ctx, () => codeAttentionStep(ctx, buffers, shape), { steps: 20, reps: 20 });
 */
export function medianStepMs(ctx: CudaContext, step: () => void, o: { steps: number; reps: number }): number {
  step();
  ctx.synchronize();
  const { graph } = ctx.capture(() => {
    for (let i = 0; i < o.steps; i++) step();
  });
  const timer = new CudaTimer(ctx);
  const ms: number[] = [];
  for (let i = 0; i < o.reps + 2; i++) {
    timer.start();
    graph.replay();
    const t = timer.stop();
    if (i >= 2) ms.push(t / o.steps);
  }
  timer.dispose();
  graph.dispose();
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1]!;
}
