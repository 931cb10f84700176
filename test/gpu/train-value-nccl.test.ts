/**
 * Data-parallel train-value on GPUs. At world size 1 the NCCL path (bucket, ncclAllReduce, mean) is bit for bit the
 * one-process run on the GPU; on a machine with 2 or more GPUs, `commvq launch` over 2 GPUs gives the losses of
 * 1 GPU on the same global batch within the tolerance of parallel-step.ts (1e-6 relative per step). Skipped without
 * a GPU or without libnccl.so.2; the multi-GPU case also without a second GPU.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { cudaDeviceCount } from '../../src/core/backend/cuda/driver.js';
import { loadNccl } from '../../src/core/backend/cuda/nccl.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { makeScale } from '../../src/core/kv/make-scale.js';
import { NcclCollective } from '../../src/core/parallel/nccl-collective.js';
import { Rendezvous } from '../../src/core/parallel/rendezvous.js';
import { readValueCodebook } from '../../src/core/values/value-codebook-file.js';
import { trainValue, type TrainValueOptions, type TrainValueResult } from '../../src/core/values/train-value.js';
import { runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

const gpu = cudaAvailable();
let nccl = false;
try {
  nccl = gpu && loadNccl().path !== '';
} catch {
  nccl = false;
}
const gpus = gpu ? cudaDeviceCount() : 0;

describe.skipIf(!gpu || !nccl || !haveFixtures)(`train-value over NCCL (${gpu && nccl ? `${gpus} GPUs` : 'skipped: no GPU or no NCCL'})`, () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-train-value-nccl-'));
  const corpus = join(work, 'corpus.jsonl');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const base = join(work, 'base');
  let n = 0;
  const runDir = () => {
    const d = join(work, `run${n++}`);
    for (const f of ['manifest.json', 'scale.arrow']) cpSync(join(base, f), join(d, f));
    return d;
  };
  let backend: CudaBackend;
  const opts = (extra: Partial<TrainValueOptions>): TrainValueOptions => ({
    runDir: runDir(), modelDir: model, corpus, backend, bits: 1, steps: 3, seqLen: 128, lr: 1e-2, schedule: 'constant', warmup: 1, evalWindows: 0, ...extra,
  });
  beforeAll(async () => {
    const words = new FixtureReference('tiny-llama').prompts[1]!.split(' ');
    writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 60).join(' ') })).join('\n'));
    await collectKv({ modelDir: model, corpus, runDir: base, backend: new CpuBackend(), tokens: 4 * 128, seqLen: 128 });
    makeScale(base);
    backend = CudaBackend.create(0);
  });
  afterAll(() => {
    backend?.dispose();
    rmSync(work, { recursive: true, force: true });
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
