import type { CudaContext } from './context.js';
import { checkCu, CU_EVENT_DEFAULT } from './driver.js';
import { asBigInt } from './native.js';

/**
 * GPU-side timing with CUDA events: the time between two points of the stream, not of the host.
 *
 *   const timer = new CudaTimer(ctx);
 *   timer.start(); enqueueWork(); const ms = timer.stop();
 *   timer.dispose();
 */
export class CudaTimer {
  private readonly begin: bigint;
  private readonly end: bigint;

  constructor(private readonly ctx: CudaContext) {
    this.begin = createEvent(ctx);
    this.end = createEvent(ctx);
  }

  /** Marks the start on the stream. */
  start(): void {
    checkCu(this.ctx.cu.cuEventRecord(this.begin, this.ctx.stream), 'cuEventRecord');
  }

  /** Marks the end, waits for it, and returns the milliseconds between the two marks. */
  stop(): number {
    const { cu } = this.ctx;
    checkCu(cu.cuEventRecord(this.end, this.ctx.stream), 'cuEventRecord');
    checkCu(cu.cuEventSynchronize(this.end), 'cuEventSynchronize');
    const ms = [0];
    checkCu(cu.cuEventElapsedTime(ms, this.begin, this.end), 'cuEventElapsedTime');
    return ms[0]!;
  }

  dispose(): void {
    this.ctx.cu.cuEventDestroy(this.begin);
    this.ctx.cu.cuEventDestroy(this.end);
  }
}

function createEvent(ctx: CudaContext): bigint {
  const e: [unknown] = [null];
  checkCu(ctx.cu.cuEventCreate(e, CU_EVENT_DEFAULT), 'cuEventCreate');
  return asBigInt(e[0]);
}
