import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { asCuda } from '../backend/cuda/cuda-tensor.js';
import { checkNccl, loadNccl, ncclAllReduceSum, ncclInitRank, ncclUniqueId, type NcclApi } from '../backend/cuda/nccl.js';
import { SideStream } from '../backend/cuda/side-stream.js';
import { CommvqError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { rendezvousHostSum, type Collective } from './collective.js';
import type { Rendezvous } from './rendezvous.js';

/**
 * Collectives of CUDA ranks (one GPU each) through NCCL: rank 0 makes the unique id, the rendezvous publishes it,
 * every rank opens its communicator; `allReduceSum` is enqueued on the backend's stream (so it orders after the
 * backward pass that filled the bucket and before the optimizer that reads it, with no host sync), `startAllReduceSum`
 * on a side stream that follows the main stream's work so far and that `settle` joins back, so a layer's gradients
 * are summed while later layers compute. Host values go over the rendezvous, which also carries barriers.
 */
export class NcclCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  private comm: bigint;
  private side: SideStream | undefined;

  private constructor(
    private readonly api: NcclApi,
    private readonly rdzv: Rendezvous,
    private readonly backend: CudaBackend,
    comm: bigint,
  ) {
    this.rank = rdzv.rank;
    this.worldSize = rdzv.worldSize;
    this.comm = comm;
  }

  /** Loads NCCL (a CommvqError when it is missing), agrees on the id over `rdzv`, opens this rank's communicator. */
  static async create(rdzv: Rendezvous, backend: CudaBackend): Promise<NcclCollective> {
    const api = loadNccl();
    const id = await rdzv.publish(rdzv.rank === 0 ? ncclUniqueId(api) : undefined, 'the NCCL unique id');
    return new NcclCollective(api, rdzv, backend, ncclInitRank(api, id, rdzv.worldSize, rdzv.rank));
  }

  async allReduceSum(t: Tensor): Promise<void> {
    this.enqueueSum(t, this.backend.ctx.stream);
  }

  startAllReduceSum(t: Tensor): void {
    this.side ??= new SideStream(this.backend.ctx);
    this.side.follow();
    this.enqueueSum(t, this.side.stream);
  }

  async settle(): Promise<void> {
    this.side?.join();
  }

  private enqueueSum(t: Tensor, stream: bigint): void {
    const c = asCuda(t, this.backend.device, 'allReduceSum');
    if (c.dtype !== 'f32' && c.dtype !== 'bf16') throw new CommvqError(`allReduceSum: ${c.dtype} tensors are not summed (f32 or bf16)`);
    ncclAllReduceSum(this.api, this.comm, c.ptr, c.numel, c.dtype, stream);
  }

  allReduceHost(values: Float64Array): Promise<Float64Array> {
    return rendezvousHostSum(this.rdzv, values);
  }

  barrier(what?: string): Promise<void> {
    return this.rdzv.barrier(what);
  }

  dispose(): void {
    if (this.comm !== 0n) {
      this.backend.synchronize();
      this.side?.dispose();
      this.side = undefined;
      checkNccl(this.api, this.api.ncclCommDestroy(this.comm), 'ncclCommDestroy');
      this.comm = 0n;
    }
    this.rdzv.close();
  }
}
