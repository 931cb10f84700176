import type { BlockPool } from './allocator.js';
import type { CudaContext } from './context.js';
import { checkCu, CU_STREAM_CAPTURE_MODE_RELAXED } from './driver.js';
import { asBigInt } from './native.js';

/**
 * A recorded sequence of kernel launches and copies, replayed with one driver call: a decode step of a 32-layer model
 * is hundreds of launches, and replaying them as a graph removes the per-launch host cost.
 *
 * What a capture freezes: device addresses and kernel arguments (scalars included). Replays therefore read their
 * inputs from, and write their outputs to, the same tensors every time: update inputs in place (e.g. `writeRows`
 * into a device tensor of ids before `replay()`) and keep the tensors returned by the captured function alive as
 * long as the graph. Memory allocated during the capture belongs to the graph until `dispose()`.
 */
export class CudaGraph {
  private disposed = false;

  constructor(
    private readonly ctx: CudaContext,
    private readonly graph: bigint,
    private readonly exec: bigint,
    private readonly pool: BlockPool,
  ) {}

  /** Enqueues one replay on the context's stream. */
  replay(): void {
    if (this.disposed) throw new Error('replay of a disposed CUDA graph');
    checkCu(this.ctx.cu.cuGraphLaunch(this.exec, this.ctx.stream), 'cuGraphLaunch');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ctx.synchronize(); // a replay may still be running
    this.ctx.cu.cuGraphExecDestroy(this.exec);
    this.ctx.cu.cuGraphDestroy(this.graph);
    this.pool.release();
  }
}

/**
 * Captures what `fn` enqueues on `ctx.stream`. Relaxed mode, because the caching allocator may call cuMemAlloc
 * during the capture (allowed there, unlike in the default global mode).
 */
export function captureGraph<T>(ctx: CudaContext, fn: () => T): { graph: CudaGraph; result: T } {
  const { cu, stream } = ctx;
  const pool = ctx.allocator.beginPool();
  const fail = (graph: unknown, error: unknown): never => {
    if (graph) cu.cuGraphDestroy(graph);
    ctx.allocator.endPool();
    pool.release();
    throw error;
  };
  try {
    checkCu(cu.cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED), 'cuStreamBeginCapture');
  } catch (e) {
    return fail(null, e);
  }
  let result: T | undefined;
  let error: unknown;
  let threw = false;
  try {
    result = fn();
  } catch (e) {
    threw = true;
    error = e;
  }
  const graph: [unknown] = [null];
  const rc = cu.cuStreamEndCapture(stream, graph) as number; // always end, or the stream stays unusable
  if (threw) return fail(graph[0], error);
  try {
    checkCu(rc, 'cuStreamEndCapture');
  } catch (e) {
    return fail(graph[0], e);
  }
  ctx.allocator.endPool();
  const handle = asBigInt(graph[0]);
  const exec: [unknown] = [null];
  const irc = cu.cuGraphInstantiateWithFlags(exec, handle, 0) as number;
  if (irc !== 0) {
    cu.cuGraphDestroy(handle);
    pool.release();
    checkCu(irc, 'cuGraphInstantiateWithFlags');
  }
  return { graph: new CudaGraph(ctx, handle, asBigInt(exec[0]), pool), result: result as T };
}
