import type { Tensor } from '../tensor/tensor.js';
import type { Rendezvous } from './rendezvous.js';

/**
 * What data parallelism needs from the ranks of a job: sum a gradient bucket over all ranks in place, sum a few
 * host numbers (loss sums, a stop flag), and wait for each other. Every rank calls the same methods in the same
 * order. `SingleProcess` (world size 1: identities, no NCCL) is the path a one-process run and CI take;
 * `NcclCollective` (CUDA, one GPU per rank) and `TcpCollective` (CPU ranks, over the rendezvous) are the others.
 *
 *   const c = await openCollective(distEnv(), backend);
 *   await c.allReduceSum(bucket);                       // f32 [n] summed over ranks, in place
 *   c.startAllReduceSum(layerGrads); …; await c.settle(); // the same, overlapped with the work in between
 *   const [loss, stop] = await c.allReduceHost(new Float64Array([myLoss, aborted ? 1 : 0]));
 */
export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /** Sums `t` (f32 or bf16, any shape) over all ranks in place; every rank ends with the same values. */
  allReduceSum(t: Tensor): Promise<void>;
  /**
   * Starts the sum of `t` over all ranks after the work enqueued so far, free to run beside work enqueued later
   * (NCCL: on a side stream); `t` is neither read nor written by the caller until `settle()` has returned. Ranks
   * start the same tensors in the same order. Collectives that cannot overlap run the sums in `settle()`.
   */
  startAllReduceSum(t: Tensor): void;
  /** Work enqueued after it sees every started sum complete. */
  settle(): Promise<void>;
  /** Sums small host vectors over all ranks in f64, in rank order (the same result on every rank). */
  allReduceHost(values: Float64Array): Promise<Float64Array>;
  /** Returns once every rank has called it; `what` names it in a timeout line. */
  barrier(what?: string): Promise<void>;
  dispose(): void;
}

/** World size 1: every collective is the identity, so a one-process run does exactly what it did before them. */
export class SingleProcess implements Collective {
  readonly rank = 0;
  readonly worldSize = 1;
  async allReduceSum(_t: Tensor): Promise<void> {}
  startAllReduceSum(_t: Tensor): void {}
  async settle(): Promise<void> {}
  async allReduceHost(values: Float64Array): Promise<Float64Array> {
    return values;
  }
  async barrier(): Promise<void> {}
  dispose(): void {}
}

/** Element-wise sums of f64 (or f32) vectors in rank order: the combine step of a host all-reduce over the rendezvous. */
export function sumInRankOrder(parts: Buffer[], kind: 'f32' | 'f64'): Uint8Array {
  const view = (b: Buffer) => (kind === 'f64' ? new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8) : new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4));
  const aligned = parts.map((p) => Buffer.from(p)); // own, aligned copies
  const out = kind === 'f64' ? new Float64Array(view(aligned[0]!)) : new Float32Array(view(aligned[0]!));
  for (const p of aligned.slice(1)) {
    const v = view(p);
    if (v.length !== out.length) throw new Error(`all-reduce: a rank sent ${v.length} values, rank 0 has ${out.length}`);
    for (let i = 0; i < out.length; i++) out[i]! += v[i]!;
  }
  return new Uint8Array(out.buffer);
}

/**
 * Σ of `values` over the ranks of `rdzv`, in f64 and rank order (rank 0 adds, every rank gets the sum): the host
 * all-reduce of the collectives that carry host values over the rendezvous; `what` names it in a failure line.
 *
 *   const [loss, tokens] = await rendezvousHostSum(rdzv, Float64Array.of(myLoss, myTokens));
 */
export async function rendezvousHostSum(rdzv: Rendezvous, values: Float64Array, what = 'a host all-reduce'): Promise<Float64Array> {
  const sum = await rdzv.exchange(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), (all) => sumInRankOrder(all, 'f64'), what, Infinity);
  return new Float64Array(sum.buffer.slice(sum.byteOffset, sum.byteOffset + sum.byteLength));
}
