/** The caching allocator's bookkeeping, on fake device memory (runs everywhere, no GPU needed). */
import { describe, expect, it } from 'vitest';
import { CachingAllocator, roundSize } from '../../src/core/backend/cuda/allocator.js';
import { CommvqError } from '../../src/core/errors.js';

function fakeMemory(capacity = Infinity) {
  const live = new Map<bigint, number>();
  let next = 0x1000n;
  let used = 0;
  return {
    live,
    raw: {
      malloc(bytes: number): bigint | null {
        if (used + bytes > capacity) return null;
        const p = next;
        next += BigInt(bytes) + 0x1000n;
        live.set(p, bytes);
        used += bytes;
        return p;
      },
      free(p: bigint): void {
        used -= live.get(p)!;
        live.delete(p);
      },
    },
  };
}

describe('CachingAllocator', () => {
  it('rounds sizes to 512 B below 1 MiB and to 2 MiB above', () => {
    expect(roundSize(1)).toBe(512);
    expect(roundSize(513)).toBe(1024);
    expect(roundSize((1 << 20) - 1)).toBe(1 << 20);
    expect(roundSize((1 << 20) + 1)).toBe(2 << 20);
    expect(roundSize((5 << 20) + 1)).toBe(6 << 20);
  });

  it('reuses a freed block of the same rounded size and counts bytes in use and the peak', () => {
    const mem = fakeMemory();
    const a = new CachingAllocator(mem.raw);
    const b1 = a.alloc(1000);
    const b2 = a.alloc(3000);
    expect(a.memory()).toMatchObject({ bytesInUse: 1024 + 3072, peakBytes: 1024 + 3072 });
    b1.free();
    b1.free(); // a second free is harmless
    expect(a.memory().bytesInUse).toBe(3072);
    const b3 = a.alloc(1020);
    expect(b3.ptr).toBe(b1.ptr);
    expect(mem.live.size).toBe(2);
    b2.free();
    b3.free();
    expect(a.memory()).toMatchObject({ bytesInUse: 0, peakBytes: 4096, bytesCached: 4096 });
    a.releaseCached();
    expect(mem.live.size).toBe(0);
  });

  it('frees the cache and retries when the device is out of memory, then fails with a CommvqError', () => {
    const mem = fakeMemory(4096);
    const a = new CachingAllocator(mem.raw);
    a.alloc(2048).free();
    const big = a.alloc(4000); // needs the cached 2048 B block released first
    expect(a.memory().bytesInUse).toBe(4096);
    expect(() => a.alloc(1)).toThrow(CommvqError);
    big.free();
  });

  it('fails past its limit as a smaller device would, counting cached blocks and releasing them first', () => {
    const mem = fakeMemory();
    const a = new CachingAllocator(mem.raw);
    a.setLimit(8192);
    const held = a.alloc(4096);
    a.alloc(2048).free(); // 2048 B cached: 6144 B held from the driver
    const next = a.alloc(4096); // over the limit with the cache, within it once the cache is released
    expect(mem.live.size).toBe(2);
    expect(() => a.alloc(512)).toThrow(/out of memory .*limit 0\.00 GiB/);
    expect(a.memory().bytesInUse).toBe(8192);
    a.setLimit(Infinity);
    a.alloc(512).free();
    held.free();
    next.free();
  });

  it('keeps blocks allocated during a graph capture out of the cache until the graph is released', () => {
    const mem = fakeMemory();
    const a = new CachingAllocator(mem.raw);
    const pool = a.beginPool();
    const scratch = a.alloc(700);
    scratch.free();
    const reused = a.alloc(700); // reuse within the capture is fine
    expect(reused.ptr).toBe(scratch.ptr);
    reused.free();
    a.endPool();
    const after = a.alloc(700); // must not get the graph's block
    expect(after.ptr).not.toBe(scratch.ptr);
    after.free();
    pool.release();
    expect(a.alloc(700).ptr).toBe(scratch.ptr);
    a.dispose();
    expect(mem.live.size).toBe(0);
  });
});
