/**
 * NCCL through koffi: at world size 1 the communicator opens and all-reduces are identities (f32, bf16); on a
 * machine with 2 or more GPUs, `commvq launch` runs one rank per GPU and each gets the sum. Skipped without a GPU,
 * and without libnccl.so.2 (COMMVQ_NCCL_LIB, the loader's paths, or python3's nvidia/nccl/lib).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { cudaDeviceCount } from '../../src/core/backend/cuda/driver.js';
import { loadNccl } from '../../src/core/backend/cuda/nccl.js';
import { bf16ToF32, f32ToBf16 } from '../../src/core/tensor/dtype.js';
import { NcclCollective } from '../../src/core/parallel/nccl-collective.js';
import { Rendezvous } from '../../src/core/parallel/rendezvous.js';
import { runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const gpu = cudaAvailable();
let nccl = '';
try {
  if (gpu) nccl = loadNccl().path;
} catch {
  nccl = '';
}
const gpus = gpu ? cudaDeviceCount() : 0;

describe.skipIf(!gpu || !nccl)(`NCCL (${nccl || 'skipped: no GPU or no libnccl.so.2'})`, () => {
  it('opens a world-size-1 communicator whose all-reduces (on the main stream, or started on a side stream and settled) leave f32 and bf16 buffers as they were', async () => {
    const backend = CudaBackend.create(0);
    const c = await NcclCollective.create(await Rendezvous.join({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1 }), backend);
    const values = [1.5, -2.25, 3e-8, 1024];
    const f32 = backend.fromArray(values, [2, 2], 'f32');
    const bf16 = backend.fromArray(values, [4], 'bf16');
    await c.allReduceSum(f32);
    await c.allReduceSum(bf16);
    expect([...backend.toFloat32(f32)]).toEqual([...new Float32Array(values)]);
    expect([...backend.toFloat32(bf16)]).toEqual(values.map((v) => bf16ToF32(f32ToBf16(v))));
    // a sum started on the side stream, then settled: the main stream's next op (the read) sees it done
    const big = backend.fromArray(Float32Array.from({ length: 1 << 22 }, (_, i) => (i % 97) - 48), [1 << 22], 'f32');
    c.startAllReduceSum(big);
    c.startAllReduceSum(f32);
    await c.settle();
    const after = backend.toFloat32(big);
    expect(after.every((v, i) => v === (i % 97) - 48)).toBe(true);
    expect([...backend.toFloat32(f32)]).toEqual([...new Float32Array(values)]);
    big.dispose();
    f32.dispose();
    bf16.dispose();
    c.dispose();
    backend.dispose();
  });

  it.skipIf(gpus < 2)(`sums over ${gpus} GPUs, one rank each, through commvq launch`, () => {
    const n = Math.min(gpus, 8);
    const r = runCli(['launch', '--gpus', `0-${n - 1}`, '--', process.execPath, join(REPO_ROOT, 'test', 'gpu', 'fixtures', 'nccl-rank.mjs')]);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; f32: number[]; bf16: number[]; host: number[] });
    expect(lines).toHaveLength(n);
    for (const l of lines) expect(l).toEqual(expect.objectContaining({ kind: 'NcclCollective', f32: [(n * (n + 1)) / 2, n / 2], bf16: [(n * (n - 1)) / 2], host: [n] }));
  });
});
