import { CommvqError } from '../../errors.js';
import type { DeviceBlock } from './kernels.js';

/**
 * A caching allocator for device memory. cuMemAlloc/cuMemFree synchronize the device and cost tens of microseconds,
 * so freed blocks go to a free list keyed by their rounded size and are handed out again for the next request of that
 * size (a decode step asks for the same sizes every token). Sizes round up to 512 B below 1 MiB and to 2 MiB above,
 * which keeps the waste of large weights under 2 MiB each. `bytesInUse` counts rounded sizes of live blocks.
 *
 * Stream safety: all work runs on one stream, so a block freed after its last use is enqueued can be reused at once.
 * While a CUDA graph is being captured, blocks allocated during the capture are set apart (`beginPool`): the graph
 * keeps writing them on every replay, so they must not serve later allocations until the graph is disposed.
 */

const SMALL = 1 << 20;
const SMALL_ROUND = 512;
const LARGE_ROUND = 2 << 20;

export function roundSize(bytes: number): number {
  const r = bytes < SMALL ? SMALL_ROUND : LARGE_ROUND;
  return Math.max(r, Math.ceil(bytes / r) * r);
}

/** The raw device calls the allocator needs (the driver in production, fakes in tests). */
export interface RawMemory {
  /** A new block, or null when the device is out of memory. */
  malloc(bytes: number): bigint | null;
  free(ptr: bigint): void;
}

/** Blocks captured into a graph: private free lists while capturing, held until `release()`. */
export class BlockPool {
  readonly blocks = new Set<bigint>();
  readonly free = new Map<number, bigint[]>();
  constructor(readonly owner: CachingAllocator) {}

  /** Returns every block of the pool to the allocator's cache (the graph that used them is gone). */
  release(): void {
    this.owner.releasePool(this);
  }
}

export class CachingAllocator {
  private readonly cache = new Map<number, bigint[]>();
  private readonly sizes = new Map<bigint, number>();
  private readonly poolOf = new Map<bigint, BlockPool>();
  private pool: BlockPool | undefined;
  private readonly pools = new Set<BlockPool>();
  private inUse = 0;
  private peak = 0;
  private cached = 0;
  /** the most bytes this allocator may hold from the driver (in use + cached); Infinity: what the device has */
  private limit = Infinity;

  constructor(private readonly raw: RawMemory) {}

  /**
   * Caps what the allocator holds from the driver (blocks in use plus its cache of freed ones), so that a larger card
   * behaves as a smaller one: an allocation past the cap fails as if the device had run out. `Infinity` lifts it.
   */
  setLimit(bytes: number): void {
    this.limit = bytes;
  }

  /** A block of at least `bytes` (≥ 1); `free()` returns it to the cache. */
  alloc(bytes: number): DeviceBlock {
    const size = roundSize(Math.max(1, bytes));
    const ptr = this.take(size) ?? this.fresh(size);
    this.sizes.set(ptr, size);
    if (this.pool) {
      this.pool.blocks.add(ptr);
      this.poolOf.set(ptr, this.pool);
    }
    this.inUse += size;
    this.peak = Math.max(this.peak, this.inUse);
    let freed = false;
    return {
      ptr,
      bytes,
      free: () => {
        if (freed) return; // a second dispose of the same tensor is harmless
        freed = true;
        this.give(ptr);
      },
    };
  }

  memory(): { bytesInUse: number; peakBytes: number; bytesCached: number } {
    return { bytesInUse: this.inUse, peakBytes: this.peak, bytesCached: this.cached };
  }

  /** Starts a new peak measurement from the current use. */
  resetPeak(): void {
    this.peak = this.inUse;
  }

  /** Frees every cached (unused) block back to the driver. */
  releaseCached(): void {
    for (const list of this.cache.values()) for (const ptr of list) this.raw.free(ptr);
    this.cache.clear();
    this.cached = 0;
  }

  /** From now on new blocks belong to a pool (graph capture) until `endPool()`. */
  beginPool(): BlockPool {
    if (this.pool) throw new CommvqError('a CUDA graph capture is already in progress', 'captures cannot nest');
    this.pool = new BlockPool(this);
    this.pools.add(this.pool);
    return this.pool;
  }

  endPool(): void {
    this.pool = undefined;
  }

  releasePool(pool: BlockPool): void {
    for (const [size, list] of pool.free) for (const ptr of list) this.toCache(ptr, size);
    pool.free.clear();
    for (const ptr of pool.blocks) this.poolOf.delete(ptr);
    pool.blocks.clear();
    this.pools.delete(pool);
  }

  /** Frees everything; blocks still held by tensors become invalid. */
  dispose(): void {
    for (const pool of [...this.pools]) pool.release();
    this.releaseCached();
    for (const ptr of this.sizes.keys()) this.raw.free(ptr);
    this.sizes.clear();
    this.inUse = 0;
  }

  private take(size: number): bigint | undefined {
    const fromPool = this.pool?.free.get(size)?.pop();
    if (fromPool !== undefined) return fromPool;
    const ptr = this.cache.get(size)?.pop();
    if (ptr !== undefined) this.cached -= size;
    return ptr;
  }

  private fresh(size: number): bigint {
    const withinLimit = () => this.inUse + this.cached + size <= this.limit;
    let ptr = withinLimit() ? this.raw.malloc(size) : null;
    if (ptr === null) {
      this.releaseCached(); // the cache may hold enough in other sizes
      ptr = withinLimit() ? this.raw.malloc(size) : null;
    }
    if (ptr === null) {
      const cap = Number.isFinite(this.limit) ? `, limit ${(this.limit / 2 ** 30).toFixed(2)} GiB` : '';
      throw new CommvqError(
        `GPU out of memory allocating ${(size / 2 ** 20).toFixed(1)} MiB ` +
          `(${(this.inUse / 2 ** 30).toFixed(2)} GiB in use by this process${cap})`,
        'use a shorter context or a smaller model, or free other processes on the GPU',
      );
    }
    return ptr;
  }

  private give(ptr: bigint): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) return;
    this.sizes.delete(ptr);
    this.inUse -= size;
    const pool = this.poolOf.get(ptr);
    if (pool) {
      // Blocks of a graph stay with the graph: reused within its capture, then held until it is disposed.
      const list = pool.free.get(size) ?? [];
      list.push(ptr);
      pool.free.set(size, list);
      return;
    }
    this.toCache(ptr, size);
  }

  private toCache(ptr: bigint, size: number): void {
    const list = this.cache.get(size) ?? [];
    list.push(ptr);
    this.cache.set(size, list);
    this.cached += size;
  }
}
