import koffi from 'koffi';
import { checkCu, CU_MEMHOSTALLOC_PORTABLE } from './driver.js';
import type { CudaContext } from './context.js';
import type { DeviceBlock } from './kernels.js';
import { asBigInt } from './native.js';

const RING_BYTES = 1 << 20;
const ALIGN = 256;

/**
 * Small host→device uploads (token ids, positions, RoPE frequencies) through a pinned ring buffer. A copy from
 * pageable memory makes the driver wait for the stream first; from pinned memory it stays asynchronous, so a decode
 * step does not stall the GPU once per RoPE call. Each upload takes the next slice of the pinned ring and of a device
 * ring of the same size. Before the ring wraps we wait for the stream, which guarantees every earlier copy from the
 * pinned slice and every kernel that read the device slice have finished. Uploads larger than the ring go through a
 * temporary block instead.
 */
export class Staging {
  private readonly host: bigint;
  private readonly hostView: Uint8Array;
  private readonly device: DeviceBlock;
  private offset = 0;
  private readonly overflow: DeviceBlock[] = [];

  constructor(private readonly ctx: CudaContext) {
    const p: [unknown] = [null];
    checkCu(ctx.cu.cuMemHostAlloc(p, RING_BYTES, CU_MEMHOSTALLOC_PORTABLE), 'cuMemHostAlloc');
    this.host = asBigInt(p[0]);
    this.hostView = new Uint8Array(koffi.view(this.host, RING_BYTES));
    this.device = ctx.allocator.alloc(RING_BYTES);
  }

  /** A device address holding a copy of `bytes`, valid for work enqueued before the next wrap of the ring. */
  put(bytes: Uint8Array): bigint {
    const size = Math.ceil(Math.max(1, bytes.byteLength) / ALIGN) * ALIGN;
    if (size > RING_BYTES / 4) return this.putLarge(bytes);
    if (this.offset + size > RING_BYTES) {
      this.ctx.synchronize();
      this.offset = 0;
      for (const b of this.overflow.splice(0)) b.free();
    }
    const at = this.offset;
    this.offset += size;
    this.hostView.set(bytes, at);
    const dst = this.device.ptr + BigInt(at);
    checkCu(this.ctx.cu.cuMemcpyHtoDAsync(dst, this.host + BigInt(at), bytes.byteLength, this.ctx.stream), 'cuMemcpyHtoDAsync');
    return dst;
  }

  dispose(): void {
    for (const b of this.overflow.splice(0)) b.free();
    this.device.free();
    this.ctx.cu.cuMemFreeHost(this.host);
  }

  private putLarge(bytes: Uint8Array): bigint {
    const block = this.ctx.allocator.alloc(bytes.byteLength);
    this.ctx.upload(block.ptr, bytes);
    this.overflow.push(block); // freed at the next wrap, when the work reading it has surely finished
    return block.ptr;
  }
}
