/**
 * Data-parallel train-value on GPUs. At world size 1 the NCCL path (bucket, ncclAllReduce, mean) is bit for bit the
 * one-process run on the GPU; on a machine with 2 or more GPUs, `commvq launch` over 2 GPUs gives the losses of
 * 1 GPU on the same global batch within the tolerance of parallel-step.ts (1e-6 relative per step). Skipped without
 * a GPU or without libnccl.so.2; the multi-GPU case also without a second GPU.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { cudaDeviceCount } from '../../src/core/backend/cuda/driver.js';
import { loadNccl } from '../../src/core/backend/cuda/nccl.js';
import { NcclCollective } from '../../src/core/parallel/nccl-collective.js';
import { Rendezvous } from '../../src/core/parallel/rendezvous.js';
import { readValueCodebook } from '../../src/core/values/value-codebook-file.js';
import { trainValue, type TrainValueOptions, type TrainValueResult } from '../../src/core/values/train-value.js';
import { runCli } from '../helpers/cli.js';
import { haveFixtures } from '../helpers/fixtures.js';
import { valueRunSetup } from '../helpers/value-run.js';

const gpu = cudaAvailable();
let nccl = false;
try {
  nccl = gpu && loadNccl().path !== '';
} catch {
  nccl = false;
}
const gpus = gpu ? cudaDeviceCount() : 0;

describe.skipIf(!gpu || !nccl || !haveFixtures)(`train-value over NCCL (${gpu && nccl ? `${gpus} GPUs` : 'skipped: no GPU or no NCCL'})`, () => {
  const runs = valueRunSetup('commvq-train-value-nccl-');
  const { corpus, model } = runs;
  const runDir = () => runs.runDir();
  let backend: CudaBackend;
  const opts = (extra: Partial<TrainValueOptions>): TrainValueOptions => ({
    runDir: runDir(), modelDir: model, corpus, backend, bits: 1, steps: 3, seqLen: 128, lr: 1e-2, schedule: 'constant', warmup: 1, evalWindows: 0, ...extra,
  });
  beforeAll(async () => {
    await runs.prepare();
    backend = CudaBackend.create(0);
  });
  afterAll(() => {
    backend?.dispose();
    runs.dispose();
  });

  it('at world size 1, the NCCL path is bit for bit the one-process run', async () => {
    const plain = await trainValue(opts({}));
    const collective = await NcclCollective.create(await Rendezvous.join({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1 }), backend);
    try {
      const viaNccl = await trainValue(opts({ collective }));
      expect(viaNccl.history).toEqual(plain.history);
      const cpu = new CpuBackend();
      const params = (path: string) => [...readValueCodebook(path, cpu).layers.values()].flatMap((l) => Object.values(l.params).map((t) => [...cpu.toFloat32(t)]));
      expect(params(viaNccl.codebook)).toEqual(params(plain.codebook));
    } finally {
      collective.dispose();
    }
  });

  it.skipIf(gpus < 2)('2 GPUs through commvq launch give 1 GPU\'s losses on the same global batch', async () => {
    const one = await trainValue(opts({ steps: 2, batch: 2 }));
    const dir = runDir();
    const r = runCli(['launch', '--gpus', '0,1', '--', 'train-value', dir, '--model', model, '--data', corpus, '--bits', '1', '--steps', '2', '--seq-len', '128',
      '--lr', '0.01', '--schedule', 'constant', '--warmup', '1', '--eval-windows', '0', '--device', 'cuda']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'value-train', 'report-1bit.json'), 'utf8')) as { history: TrainValueResult['history'] };
    report.history.forEach((h, i) => {
      for (const k of ['valueMse', 'attentionMse', 'loss'] as const) expect(Math.abs(h[k] - one.history[i]![k]) / one.history[i]![k], `step ${h.step} ${k}`).toBeLessThan(1e-6);
    });
  });
});
