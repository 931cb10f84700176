/**
 * train-value on a fixture model on the CPU: both loss terms fall, the trained compressor beats the untrained one
 * and a plain quantizer on held-out windows, a resumed run ends with identical weights, and bad input is refused.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { makeScale } from '../../src/core/kv/make-scale.js';
import { compressorShape, trainableCount } from '../../src/core/values/value-compressor.js';
import { readValueCodebook, readValueCodebookShape } from '../../src/core/values/value-codebook-file.js';
import { learningRate } from '../../src/core/values/value-trainer.js';
import { trainValue, type TrainValueOptions } from '../../src/core/values/train-value.js';
import { runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

describe('the compressor of spec §5.2', () => {
  it('has the reference parameter counts at D = 1024', () => {
    expect(trainableCount(compressorShape(1, 1024))).toBe(7_346_176);
    expect(trainableCount(compressorShape(1, 1024)) + 1024).toBe(7_347_200); // + the frozen scale
    expect(trainableCount(compressorShape(2, 1024))).toBe(23_078_912);
    expect(compressorShape(1, 1024)).toMatchObject({ groups: 512, codeBits: 1024, inter: 2048 });
    expect(compressorShape(2, 1024)).toMatchObject({ groups: 1024, codeBits: 2048, inter: 4096 });
  });

  it('follows the reference learning-rate schedules', () => {
    const cos = { lr: 1e-3, schedule: 'cosine' as const, warmup: 100, steps: 100_000 };
    expect(learningRate(0, cos)).toBe(0); // the first step runs at lr 0
    expect(learningRate(9, cos)).toBeCloseTo((1e-3 * Math.log(10)) / Math.log(100), 12);
    expect(learningRate(100, cos)).toBeCloseTo(1e-3 * (1e-4 + (1 - 1e-4) * (1 + Math.cos(Math.PI / 99_900)) / 2), 12);
    expect(learningRate(99_999, cos)).toBeCloseTo(1e-7, 9);
    const constant = { lr: 1e-3, schedule: 'constant' as const, warmup: 10_000, steps: 1_000_000 };
    expect(learningRate(9_999, constant)).toBeCloseTo(1e-3 * Math.log(10_000) / Math.log(10_000), 12);
    expect(learningRate(500_000, constant)).toBe(1e-3);
  });
});

describe.skipIf(!haveFixtures)('train-value on tiny-llama', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-train-value-'));
  const runDir = join(work, 'run');
  const corpus = join(work, 'corpus.jsonl');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const opts = (extra: Partial<TrainValueOptions> = {}): TrainValueOptions => ({
    runDir, modelDir: model, corpus, backend: new CpuBackend(), bits: 1, steps: 12, seqLen: 128, lr: 1e-2, schedule: 'constant', warmup: 1, evalWindows: 2, ...extra,
  });
  beforeAll(async () => {
    const words = new FixtureReference('tiny-llama').prompts[1]!.split(' ');
    writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 60).join(' ') })).join('\n'));
    await collectKv({ modelDir: model, corpus, runDir, backend: new CpuBackend(), tokens: 4 * 128, seqLen: 128 });
    makeScale(runDir);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('lowers both loss terms and beats the untrained compressor and a 1-bit quantizer on held-out windows', async () => {
    const r = await trainValue(opts());
    const first = r.history.slice(0, 3);
    const last = r.history.slice(-3);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(last.map((h) => h.valueMse))).toBeLessThan(mean(first.map((h) => h.valueMse)));
    expect(mean(last.map((h) => h.attentionMse))).toBeLessThan(mean(first.map((h) => h.attentionMse)));
    for (const e of r.evaluation!) {
      console.log(`layer ${e.layer}: held-out relative value error trained ${e.trained.toFixed(3)}, untrained ${e.untrained.toFixed(3)}, 1-bit asymmetric ${e.asymmetric.toFixed(3)}`);
      expect(e.trained).toBeLessThan(e.untrained);
      expect(e.trained).toBeLessThan(e.asymmetric);
    }
    const { shape, layers } = readValueCodebook(r.codebook, new CpuBackend());
    expect(shape).toMatchObject({ bits: 1, featDim: 128, codeBits: 128 });
    expect(await readValueCodebookShape(r.codebook)).toEqual(shape); // from the footer alone
    expect([...layers.keys()]).toEqual([0, 1]);
    expect(readFileSync(r.lossPlot, 'utf8')).toMatch(/^<svg[\s\S]*polyline[\s\S]*<\/svg>$/);
  });

  it('resumes bit for bit: 3 steps, then 3 more with --resume, equal 6 straight', async () => {
    const hash = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
    const straightDir = join(work, 'straight');
    const resumedDir = join(work, 'resumed');
    for (const d of [straightDir, resumedDir]) {
      cpSync(join(runDir, 'manifest.json'), join(d, 'manifest.json'));
      cpSync(join(runDir, 'scale.arrow'), join(d, 'scale.arrow'));
    }
    const straight = await trainValue(opts({ runDir: straightDir, steps: 6, checkpointEvery: 1, evalWindows: 0 }));
    const abort = new AbortController();
    const half = await trainValue(opts({ runDir: resumedDir, steps: 6, checkpointEvery: 1, evalWindows: 0, signal: abort.signal, onStep: (s) => s.step === 3 && abort.abort() }));
    expect(half).toMatchObject({ complete: false, stepsDone: 3 });
    const resumed = await trainValue(opts({ runDir: resumedDir, steps: 6, checkpointEvery: 1, evalWindows: 0, resume: true }));
    expect(resumed.complete).toBe(true);
    expect(resumed.history).toEqual(straight.history);
    expect(hash(resumed.codebook)).toBe(hash(straight.codebook));
  });

  it('--bits 1,2 trains each width in turn, as the library does one at a time', async () => {
    const dir = join(work, 'widths');
    for (const f of ['manifest.json', 'scale.arrow']) cpSync(join(runDir, f), join(dir, f));
    const r = runCli(['train-value', dir, '--model', model, '--data', corpus, '--bits', '1,2', '--steps', '2', '--seq-len', '128', '--eval-windows', '0', '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { codebook: string; complete: boolean; stepsDone: number }[];
    expect(out.map((o) => [o.codebook, o.complete, o.stepsDone])).toEqual([[join(dir, 'value-codebook-1bit.arrow'), true, 2], [join(dir, 'value-codebook-2bit.arrow'), true, 2]]);
    expect((await readValueCodebookShape(out[1]!.codebook)).bits).toBe(2);
  });

  it('refuses bad input with one line', () => {
    const cli = (dir: string, extra: string[] = []) =>
      runCli(['train-value', dir, '--model', model, '--data', corpus, '--bits', '1', '--steps', '2', '--seq-len', '128', '--device', 'cpu', ...extra]);
    const noScale = join(work, 'no-scale');
    cpSync(join(runDir, 'manifest.json'), join(noScale, 'manifest.json'));
    expect(cli(noScale).stderr).toMatch(/no-scale: no scale\.arrow/);
    const otherModel = join(work, 'other-model');
    cpSync(fixtureDir('tiny-qwen2'), otherModel, { recursive: true });
    const r = runCli(['train-value', runDir, '--model', otherModel, '--data', corpus, '--bits', '1', '--steps', '2', '--seq-len', '128', '--device', 'cpu']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/was collected from a different model/);
    const corrupt = join(work, 'corrupt');
    cpSync(join(runDir, 'manifest.json'), join(corrupt, 'manifest.json'));
    cpSync(join(runDir, 'scale.arrow'), join(corrupt, 'scale.arrow'));
    cpSync(join(work, 'resumed', 'value-train'), join(corrupt, 'value-train'), { recursive: true });
    const ckpt = join(corrupt, 'value-train', 'checkpoint-1bit.safetensors');
    writeFileSync(ckpt, readFileSync(ckpt).subarray(0, 5000));
    const bad = cli(corrupt, ['--resume']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/checkpoint-1bit\.safetensors: corrupt/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });
});
