import type { CudaContext } from './context.js';
import { checkCu, CU_EVENT_DISABLE_TIMING, CU_STREAM_NON_BLOCKING } from './driver.js';
import { asBigInt } from './native.js';
import { createEvent } from './timing.js';

/**
 * A second stream beside the context's main stream, tied to it by events, for work that should run while the main
 * stream goes on (an all-reduce of finished gradients during the rest of the pass). Neither call blocks the host:
 *
 *   side.follow();   // work enqueued on side.stream from now on starts after everything enqueued on the main stream
 *   enqueue(side.stream);
 *   side.join();     // work enqueued on the main stream from now on starts after everything enqueued on the side
 *
 * A stream wait takes the event's latest record at the time of the call, so one event per direction serves any
 * number of follow/join calls. Memory touched by side work must stay allocated until a `join()` has been followed
 * by main-stream work (the caching allocator reuses blocks in main-stream order).
 */
export class SideStream {
  readonly stream: bigint;
  private readonly mainMark: bigint;
  private readonly sideMark: bigint;

  constructor(private readonly ctx: CudaContext) {
    const s: [unknown] = [null];
    checkCu(ctx.cu.cuStreamCreate(s, CU_STREAM_NON_BLOCKING), 'cuStreamCreate');
    this.stream = asBigInt(s[0]);
    this.mainMark = createEvent(ctx, CU_EVENT_DISABLE_TIMING);
    this.sideMark = createEvent(ctx, CU_EVENT_DISABLE_TIMING);
  }

  /** The side stream waits for the main stream's work so far. */
  follow(): void {
    const { cu } = this.ctx;
    checkCu(cu.cuEventRecord(this.mainMark, this.ctx.stream), 'cuEventRecord');
    checkCu(cu.cuStreamWaitEvent(this.stream, this.mainMark, 0), 'cuStreamWaitEvent');
  }

  /** The main stream waits for the side stream's work so far. */
  join(): void {
    const { cu } = this.ctx;
    checkCu(cu.cuEventRecord(this.sideMark, this.stream), 'cuEventRecord');
    checkCu(cu.cuStreamWaitEvent(this.ctx.stream, this.sideMark, 0), 'cuStreamWaitEvent');
  }

  dispose(): void {
    const { cu } = this.ctx;
    cu.cuStreamSynchronize(this.stream);
    cu.cuEventDestroy(this.mainMark);
    cu.cuEventDestroy(this.sideMark);
    cu.cuStreamDestroy(this.stream);
  }
}
