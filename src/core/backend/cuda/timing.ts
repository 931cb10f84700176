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

/** A CUDA event of `ctx` (CU_EVENT_DEFAULT: it can time; CU_EVENT_DISABLE_TIMING: ordering only, cheaper). */
export function createEvent(ctx: CudaContext, flags = CU_EVENT_DEFAULT): bigint {
  const e: [unknown] = [null];
  checkCu(ctx.cu.cuEventCreate(e, flags), 'cuEventCreate');
  return asBigInt(e[0]);
}

/**
 * GPU time of named phases of enqueued work, summed over many intervals without waiting for any: each `time` call
 * marks the stream before and after the work it enqueues; `totals` waits for the marks and adds them up by phase.
 *
 *   const phases = new PhaseTimer(ctx);
 *   phases.time('keys', () => encodeKeys(...));   // as many times as it runs
 *   phases.totals();                               // { keys: 12.5 } milliseconds, and the marks are cleared
 */
export class PhaseTimer {
  private marks: { phase: string; begin: bigint; end: bigint }[] = [];

  constructor(private readonly ctx: CudaContext) {}

  time<T>(phase: string, work: () => T): T {
    const begin = createEvent(this.ctx);
    const end = createEvent(this.ctx);
    checkCu(this.ctx.cu.cuEventRecord(begin, this.ctx.stream), 'cuEventRecord');
    try {
      return work();
    } finally {
      checkCu(this.ctx.cu.cuEventRecord(end, this.ctx.stream), 'cuEventRecord');
      this.marks.push({ phase, begin, end });
    }
  }

  /** Milliseconds per phase since the last call (waits for the work marked). */
  totals(): Record<string, number> {
    const out: Record<string, number> = {};
    const { cu } = this.ctx;
    for (const m of this.marks.splice(0)) {
      checkCu(cu.cuEventSynchronize(m.end), 'cuEventSynchronize');
      const ms = [0];
      checkCu(cu.cuEventElapsedTime(ms, m.begin, m.end), 'cuEventElapsedTime');
      out[m.phase] = (out[m.phase] ?? 0) + ms[0]!;
      cu.cuEventDestroy(m.begin);
      cu.cuEventDestroy(m.end);
    }
    return out;
  }
}
