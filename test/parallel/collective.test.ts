/**
 * Collectives on the CPU: world size 1 is the identity (what one process and CI run), the TCP collective sums over
 * in-process ranks in rank order, and NCCL's loader says clearly where it looked when the library is missing.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { loadNccl, ncclCandidates } from '../../src/core/backend/cuda/nccl.js';
import { SingleProcess } from '../../src/core/parallel/collective.js';
import { freePort } from '../../src/core/parallel/free-port.js';
import { openCollective } from '../../src/core/parallel/open-collective.js';

describe('collectives on the CPU', () => {
  it('world size 1 opens SingleProcess, whose all-reduces are identities', async () => {
    const b = new CpuBackend();
    const c = await openCollective({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: 100 }, b);
    expect(c).toBeInstanceOf(SingleProcess);
    const t = b.fromArray([0.1, -2, 3e-8], [3], 'f32');
    await c.allReduceSum(t);
    c.startAllReduceSum(t);
    await c.settle();
    expect([...b.toFloat32(t)]).toEqual([...new Float32Array([0.1, -2, 3e-8])]);
    expect([...(await c.allReduceHost(new Float64Array([1.5, 0])))]).toEqual([1.5, 0]);
  });

  it('3 CPU ranks sum tensors (f32, bf16) and host values over TCP, the same on every rank', async () => {
    const masterPort = await freePort();
    const backends = [0, 1, 2].map(() => new CpuBackend());
    const cs = await Promise.all([0, 1, 2].map((rank) => openCollective({ rank, worldSize: 3, localRank: rank, localWorldSize: 3, masterAddr: '127.0.0.1', masterPort, timeoutMs: 5000 }, backends[rank]!)));
    const f32 = cs.map((_, r) => backends[r]!.fromArray([r + 1, 10 * r, 0.5], [1, 3], 'f32'));
    const bf16 = cs.map((_, r) => backends[r]!.fromArray([r, 1], [2], 'bf16'));
    await Promise.all(cs.map((c, r) => c.allReduceSum(f32[r]!)));
    await Promise.all(cs.map((c, r) => c.allReduceSum(bf16[r]!)));
    const host = await Promise.all(cs.map((c, r) => c.allReduceHost(new Float64Array([r, 1]))));
    for (let r = 0; r < 3; r++) {
      expect([...backends[r]!.toFloat32(f32[r]!)]).toEqual([6, 30, 1.5]);
      expect([...backends[r]!.toFloat32(bf16[r]!)]).toEqual([3, 3]);
      expect([...host[r]!]).toEqual([3, 3]);
    }
    // a 2 MB buffer arrives in many TCP chunks and is framed whole
    const big = cs.map((_, r) => backends[r]!.fromArray(new Float32Array(500_000).fill(r + 0.5), [500_000], 'f32'));
    await Promise.all(cs.map((c, r) => c.allReduceSum(big[r]!)));
    for (let r = 0; r < 3; r++) expect(backends[r]!.toFloat32(big[r]!).every((v) => v === 4.5)).toBe(true);
    // started sums leave their tensors alone until settle, which sums them in the order they were started
    const early = cs.map((_, r) => backends[r]!.fromArray([r, 2], [2], 'f32'));
    const late = cs.map((_, r) => backends[r]!.fromArray([1, r], [2], 'f32'));
    cs.forEach((c, r) => c.startAllReduceSum(early[r]!));
    cs.forEach((c, r) => c.startAllReduceSum(late[r]!));
    expect([...backends[2]!.toFloat32(early[2]!)]).toEqual([2, 2]);
    await Promise.all(cs.map((c) => c.settle()));
    for (let r = 0; r < 3; r++) {
      expect([...backends[r]!.toFloat32(early[r]!)]).toEqual([3, 6]);
      expect([...backends[r]!.toFloat32(late[r]!)]).toEqual([3, 3]);
    }
    await Promise.all(cs.map((c) => c.barrier()));
    cs.forEach((c) => c.dispose());
  });
});

describe('NCCL library lookup', () => {
  it('takes COMMVQ_NCCL_LIB alone, and says where it looked when NCCL cannot load', () => {
    expect(ncclCandidates({ COMMVQ_NCCL_LIB: '/opt/nccl/libnccl.so.2' })).toEqual(['/opt/nccl/libnccl.so.2']);
    expect(ncclCandidates({}).slice(0, 2)).toEqual(['libnccl.so.2', '/usr/local/cuda/lib64/libnccl.so.2']);
    expect(() => loadNccl({ COMMVQ_NCCL_LIB: '/nonexistent/libnccl.so.2' })).toThrow(/^NCCL not found: no libnccl\.so\.2 in COMMVQ_NCCL_LIB=\/nonexistent\/libnccl\.so\.2 \(/);
  });
});
