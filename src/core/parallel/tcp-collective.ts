import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { rendezvousHostSum, sumInRankOrder, type Collective } from './collective.js';
import type { Rendezvous } from './rendezvous.js';

/**
 * Collectives of CPU ranks over the TCP rendezvous (no NCCL): each rank sends its buffer to rank 0, which sums in
 * rank order (f32 for tensors, f64 for host values) and sends the sum back. Slow for big buffers, exact in its order,
 * and what lets the data-parallel training path run, and be tested, with several ranks on a machine without GPUs.
 */
export class TcpCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  private readonly pending: Tensor[] = [];

  constructor(
    private readonly rdzv: Rendezvous,
    private readonly backend: Backend,
  ) {
    this.rank = rdzv.rank;
    this.worldSize = rdzv.worldSize;
  }

  async allReduceSum(t: Tensor): Promise<void> {
    const mine = this.backend.toFloat32(t);
    const sum = await this.rdzv.exchange(new Uint8Array(mine.buffer, mine.byteOffset, mine.byteLength), (all) => sumInRankOrder(all, 'f32'), 'an all-reduce', Infinity);
    this.backend.upload(t, new Float32Array(sum.buffer.slice(sum.byteOffset, sum.byteOffset + sum.byteLength)));
  }

  /** Over TCP nothing runs beside the host's work: the started sums run, in order, in `settle()`. */
  startAllReduceSum(t: Tensor): void {
    this.pending.push(t);
  }

  async settle(): Promise<void> {
    const started = this.pending.splice(0);
    for (const t of started) await this.allReduceSum(t);
  }

  allReduceHost(values: Float64Array): Promise<Float64Array> {
    return rendezvousHostSum(this.rdzv, values);
  }

  barrier(what?: string): Promise<void> {
    return this.rdzv.barrier(what);
  }

  dispose(): void {
    this.rdzv.close();
  }
}
