/**
 * The TCP rendezvous with N in-process ranks on localhost: everyone joins, rank 0's blob reaches every rank, a
 * barrier holds until the last rank arrives, exchanges combine in rank order, and a rank that never joins or that
 * leaves fails the others with one line naming it.
 */
import { describe, expect, it } from 'vitest';
import { distEnv } from '../../src/core/parallel/dist-env.js';
import { freePort } from '../../src/core/parallel/free-port.js';
import { parseGpuList } from '../../src/core/parallel/gpu-list.js';
import { failureLine } from '../../src/core/parallel/launcher.js';
import { rankEnv } from '../../src/core/parallel/launch-env.js';
import { Rendezvous } from '../../src/core/parallel/rendezvous.js';

async function joinAll(worldSize: number, o: { timeoutMs?: number; ranks?: number[] } = {}): Promise<Rendezvous[]> {
  const masterPort = await freePort();
  const ranks = o.ranks ?? Array.from({ length: worldSize }, (_, r) => r);
  return Promise.all(ranks.map((rank) => Rendezvous.join({ rank, worldSize, masterAddr: '127.0.0.1', masterPort, timeoutMs: o.timeoutMs ?? 5000 })));
}

describe('rendezvous', () => {
  it('delivers rank 0\'s 128-byte blob to all 4 ranks and holds a barrier until the last one arrives', async () => {
    const all = await joinAll(4);
    const blob = Buffer.from(Array.from({ length: 128 }, (_, i) => (i * 7 + 3) & 255));
    const got = await Promise.all(all.map((r) => r.publish(r.rank === 0 ? blob : undefined)));
    for (const g of got) expect(g.equals(blob)).toBe(true);

    const passed: number[] = [];
    const barriers = all.slice(0, 3).map((r) => r.barrier().then(() => passed.push(r.rank)));
    await new Promise((r) => setTimeout(r, 100));
    expect(passed).toEqual([]); // rank 3 has not arrived
    await Promise.all([...barriers, all[3]!.barrier()]);
    expect(passed.sort()).toEqual([0, 1, 2]);

    const order = await Promise.all(all.map((r) => r.exchange(Buffer.from([r.rank]), (xs) => Buffer.concat(xs), 'a gather')));
    for (const o of order) expect([...o]).toEqual([0, 1, 2, 3]); // rank order, whatever the arrival order
    all.forEach((r) => r.close());
  });

  it('names the rank that never joins, within the deadline', async () => {
    const t0 = performance.now();
    const masterPort = await freePort();
    const join = (rank: number) => Rendezvous.join({ rank, worldSize: 3, masterAddr: '127.0.0.1', masterPort, timeoutMs: 400 });
    const [zero, one] = await Promise.allSettled([join(0), join(1)]); // rank 2 never comes
    expect(zero.status === 'rejected' && (zero.reason as Error).message).toBe('rendezvous: rank 2 of 3 did not join rank 0 at 127.0.0.1:' + masterPort + ' within 0.4 s');
    expect(one.status === 'rejected' && (one.reason as Error).message).toMatch(/^rendezvous: rank 1 /);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('says so when rank 0 cannot be reached, and when a rank leaves mid-job', async () => {
    const masterPort = await freePort();
    await expect(Rendezvous.join({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort, timeoutMs: 300 }))
      .rejects.toThrow(`rendezvous: rank 1 could not reach rank 0 at 127.0.0.1:${masterPort} within 0.3 s`);
    const [zero, one, two] = await joinAll(3);
    two!.close();
    await expect(Promise.all([zero!.barrier('step 7'), one!.barrier('step 7')])).rejects.toThrow(/rendezvous: rank 2 left|did not reach step 7/);
    zero!.close();
    one!.close();
  });

  it('refuses a rank started with another world size', async () => {
    const masterPort = await freePort();
    const zero = Rendezvous.join({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort, timeoutMs: 2000 });
    const odd = Rendezvous.join({ rank: 1, worldSize: 3, masterAddr: '127.0.0.1', masterPort, timeoutMs: 500 });
    await expect(zero).rejects.toThrow('rendezvous: rank 1 was started with world size 3, rank 0 with 2');
    await expect(odd).rejects.toThrow(/rendezvous: /);
  });
});

describe('job environment', () => {
  it('parses --gpus lists and refuses bad ones with one line', () => {
    expect(parseGpuList('0-3,6')).toEqual([0, 1, 2, 3, 6]);
    expect(parseGpuList('5')).toEqual([5]);
    expect(() => parseGpuList('3-1')).toThrow('gpus 3-1: the range 3-1 runs backwards');
    expect(() => parseGpuList('0,0')).toThrow('gpus 0,0: GPU 0 is listed twice');
    expect(() => parseGpuList('a')).toThrow(/not a GPU ordinal/);
  });

  it('names a failed rank in one line, whatever the world size', () => {
    expect(failureLine({ rank: 0, gpu: 3, code: 2, signal: null }, 1)).toBe('rank 0 (GPU 3) exited with code 2');
    expect(failureLine({ rank: 1, gpu: 1, code: null, signal: 'SIGKILL' }, 2)).toBe('rank 1 (GPU 1) was killed by SIGKILL; the other rank was stopped');
    expect(failureLine({ rank: 9, gpu: 1, code: 1, signal: null }, 16)).toBe('rank 9 (GPU 1) exited with code 1; the other 15 ranks were stopped');
  });

  it('gives each rank torchrun\'s variables, and reads them back', () => {
    const env = rankEnv({ gpus: [4, 5, 6, 7], localRank: 2, nnodes: 2, nodeRank: 1, masterAddr: 'node0', masterPort: 29400 });
    expect(env).toMatchObject({ CUDA_VISIBLE_DEVICES: '6', RANK: '6', LOCAL_RANK: '2', WORLD_SIZE: '8', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'node0', MASTER_PORT: '29400', NCCL_NVLS_ENABLE: '0' });
    expect(distEnv(env)).toMatchObject({ rank: 6, worldSize: 8, localRank: 2, localWorldSize: 4, masterAddr: 'node0', masterPort: 29400 });
    expect(distEnv({})).toMatchObject({ rank: 0, worldSize: 1 });
    expect(() => distEnv({ RANK: '2', WORLD_SIZE: '2' })).toThrow('RANK=2 is outside WORLD_SIZE=2');
    expect(() => distEnv({ RANK: '1', WORLD_SIZE: '2' })).toThrow('WORLD_SIZE=2 without MASTER_ADDR and MASTER_PORT');
  });
});
