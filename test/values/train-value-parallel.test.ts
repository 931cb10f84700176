/**
 * Data-parallel train-value on the CPU. World size 1 is bit for bit the one-process run of before data parallelism
 * (golden losses and parameter hash taken from the code before it), with and without the SingleProcess collective;
 * 2 CPU ranks (TCP collective, through commvq launch and in process) give the losses of 1 rank for the same global
 * batch within the stated tolerance (parallel-step.ts); one rank's Ctrl-C stops all after the same step, and the
 * checkpoint resumes on another world size; a batch the ranks cannot split is refused.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { SingleProcess } from '../../src/core/parallel/collective.js';
import { freePort } from '../../src/core/parallel/free-port.js';
import { openCollective } from '../../src/core/parallel/open-collective.js';
import { readValueCodebook } from '../../src/core/values/value-codebook-file.js';
import { trainValue, type TrainValueOptions, type TrainValueResult } from '../../src/core/values/train-value.js';
import { runCli } from '../helpers/cli.js';
import { haveFixtures } from '../helpers/fixtures.js';
import { valueRunSetup } from '../helpers/value-run.js';

/** 4 steps of the one-process trainer before data parallelism (commit efdbf78), on the setup below. */
const GOLDEN = {
  valueMse: [1.7738224029718248, 1.6965890893667557, 1.6061235046449427, 1.5845501396903559],
  attentionMse: [2.3881698613113196, 1.747214512528327, 1.48150612397703, 1.6418891185508189],
  gradNorm: [0.3035292574238411, 0.30556233464047594, 0.2590639713617354, 0.51967538881458],
  params: '5e4b9a6837cb85cd92cb68f88ee1f55f3cc672ad018182e92bbfa058af2565ef',
};
/** parallel-step.ts: the same global batch on any world size gives the same loss within this (f32 sum order) */
const REL_TOL = 1e-6;

describe.skipIf(!haveFixtures)('data-parallel train-value on tiny-llama', () => {
  const runs = valueRunSetup('commvq-train-value-dp-');
  const { corpus, model } = runs;
  const runDir = () => runs.runDir();
  const opts = (extra: Partial<TrainValueOptions>): TrainValueOptions => ({
    runDir: runDir(), modelDir: model, corpus, backend: new CpuBackend(), bits: 1, steps: 4, seqLen: 128, lr: 1e-2, schedule: 'constant', warmup: 1, evalWindows: 0, ...extra,
  });
  /** `worldSize` in-process CPU ranks over the TCP collective, each with its own backend, on one run folder (or `dirs[rank]`) */
  const ranks = async (worldSize: number, extra: Partial<TrainValueOptions>, dirs: string[] = [], perRank: (rank: number) => Partial<TrainValueOptions> = () => ({})): Promise<TrainValueResult[]> => {
    const masterPort = await freePort();
    const dir = extra.runDir ?? runDir();
    const collectives = await Promise.all(Array.from({ length: worldSize }, (_, rank) => openCollective({ rank, worldSize, localRank: rank, localWorldSize: worldSize, masterAddr: '127.0.0.1', masterPort, timeoutMs: 10_000 }, new CpuBackend())));
    try {
      return await Promise.all(collectives.map((collective, rank) => trainValue(opts({ ...extra, runDir: dirs[rank] ?? dir, collective, ...perRank(rank) }))));
    } finally {
      collectives.forEach((c) => c.dispose());
    }
  };
  const paramsHash = (codebook: string) => {
    const b = new CpuBackend();
    const h = createHash('sha256');
    for (const [l, p] of readValueCodebook(codebook, b).layers) {
      for (const [name, t] of Object.entries(p.params)) {
        const v = b.toFloat32(t);
        h.update(`${l}.${name}`).update(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      }
    }
    return h.digest('hex');
  };
  /** 1 rank, 2 steps of a global batch of 2 windows: what the multi-rank runs are compared with (run once) */
  let oneRankRun: Promise<TrainValueResult> | undefined;
  const oneRank = () => (oneRankRun ??= trainValue(opts({ steps: 2, batch: 2, collective: new SingleProcess() })));
  const expectClose = (a: TrainValueResult['history'], b: TrainValueResult['history']) => {
    expect(a.length).toBe(b.length);
    a.forEach((h, i) => {
      for (const k of ['valueMse', 'attentionMse', 'loss'] as const) expect(Math.abs(h[k] - b[i]![k]) / Math.abs(b[i]![k]), `step ${h.step} ${k}`).toBeLessThan(REL_TOL);
    });
  };

  beforeAll(async () => {
    await runs.prepare();
  });
  afterAll(() => runs.dispose());

  it('at world size 1 is bit for bit the trainer before data parallelism, with and without the SingleProcess collective', async () => {
    const r = await trainValue(opts({ collective: new SingleProcess() }));
    expect(r.history.map((h) => h.valueMse)).toEqual(GOLDEN.valueMse);
    expect(r.history.map((h) => h.attentionMse)).toEqual(GOLDEN.attentionMse);
    expect(r.history.map((h) => h.gradNorm)).toEqual(GOLDEN.gradNorm);
    expect(paramsHash(r.codebook)).toBe(GOLDEN.params);
    // the plain step: its first 2 steps are the golden's (a constant learning rate does not depend on the step count)
    const plain = await trainValue(opts({ steps: 2 }));
    expect(plain.history.map((h) => [h.valueMse, h.attentionMse, h.gradNorm])).toEqual([0, 1].map((i) => [GOLDEN.valueMse[i], GOLDEN.attentionMse[i], GOLDEN.gradNorm[i]]));
  });

  it('runs through commvq launch: 2 CPU processes, the rendezvous from the environment, rank 0\'s report', async () => {
    const one = await oneRank();
    const dir = runDir();
    const r = runCli(['launch', '--gpus', '0,1', '--', 'train-value', dir, '--model', model, '--data', corpus, '--bits', '1', '--steps', '2', '--seq-len', '128',
      '--lr', '0.01', '--schedule', 'constant', '--warmup', '1', '--eval-windows', '0', '--device', 'cpu']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/→ .*value-codebook-1bit\.arrow/g)).toHaveLength(1); // rank 0 alone prints
    const report = JSON.parse(readFileSync(join(dir, 'value-train', 'report-1bit.json'), 'utf8')) as { batch: number; history: TrainValueResult['history'] };
    expect(report.batch).toBe(2);
    expectClose(report.history, one.history);
  });

  it('2 ranks: one rank\'s Ctrl-C stops both after the same step, only rank 0 writes, and 1 rank resumes to 1 rank\'s losses', async () => {
    const straight = await oneRank();
    const dir = runDir();
    const interrupted = new AbortController();
    interrupted.abort(); // rank 1 only: its vote stops both after the first step
    const rank1Dir = runDir(); // rank 1 in a folder of its own, to see that it writes nothing
    const half = await ranks(2, { runDir: dir, steps: 2 }, [dir, rank1Dir], (rank) => (rank === 1 ? { signal: interrupted.signal } : {}));
    expect(half.map((r) => [r.stepsDone, r.complete])).toEqual([[1, false], [1, false]]);
    expect(half[1]!.history).toEqual(half[0]!.history); // every rank sees the all-reduced losses
    expect(existsSync(join(rank1Dir, 'value-train'))).toBe(false);
    const resumed = await trainValue(opts({ runDir: dir, steps: 2, resume: true })); // 1 rank; the checkpoint's batch of 2
    expect(resumed.history[0]).toEqual(half[0]!.history[0]);
    expectClose(resumed.history, straight.history);
  });

  it('refuses a batch the ranks cannot split, with one line', async () => {
    await expect(ranks(2, { steps: 1, batch: 3 })).rejects.toThrow('batch 3: 3 windows per step do not split over 2 ranks');
  });
});
