/**
 * Ctrl-C during train-value and train-key, as a user sees it (issue 17): the command stops within 5 s, exits 130
 * with one line saying to rerun with --resume, and the resumed run ends with the same bytes as an uninterrupted one.
 * Both loops hand the event loop a turn between steps (src/core/stop-point.ts); without that the SIGINT handler
 * never ran and train-value trained every step. A stopped train-key leaves no codebook under its final name.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { trainKey } from '../../src/core/keys/train-key.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { makeScale } from '../../src/core/kv/make-scale.js';
import { trainValue } from '../../src/core/values/train-value.js';
import { interruptCli, runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

const hash = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(!haveFixtures)('Ctrl-C during training (tiny-llama, CPU)', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-interrupt-'));
  const runDir = join(work, 'run');
  const corpus = join(work, 'corpus.jsonl');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  beforeAll(async () => {
    const words = new FixtureReference('tiny-llama').prompts[1]!.split(' ');
    writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 120).join(' ') })).join('\n'));
    await collectKv({ modelDir: model, corpus, runDir, backend: new CpuBackend(), tokens: 4608, seqLen: 512 }); // enough keys for the EM
    makeScale(runDir);
  }, 120_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('train-value stops within 5 s with exit 130, and --resume ends with the uninterrupted bytes', async () => {
    const steps = 6;
    const dirs = { straight: join(work, 'v-straight'), resumed: join(work, 'v-resumed') };
    for (const d of Object.values(dirs)) for (const f of ['manifest.json', 'scale.arrow']) cpSync(join(runDir, f), join(d, f));
    const settings = { modelDir: model, corpus, backend: new CpuBackend(), bits: 1 as const, steps, seqLen: 128, evalWindows: 0, checkpointEvery: 1 };
    const straight = await trainValue({ runDir: dirs.straight, ...settings });

    const args = ['train-value', dirs.resumed, '--model', model, '--data', corpus, '--bits', '1', '--steps', String(steps), '--seq-len', '128', '--eval-windows', '0', '--checkpoint-every', '1', '--device', 'cpu'];
    const checkpoint = join(dirs.resumed, 'value-train', 'checkpoint-1bit.safetensors');
    const stopped = await interruptCli(args, () => existsSync(checkpoint)); // after the first step
    expect(stopped.status, stopped.stderr).toBe(130);
    expect(stopped.stopSeconds).toBeLessThan(5);
    expect(stopped.stderr).toMatch(/stopped at step [1-5] of 1-bit; rerun with --resume to continue/);

    const resumed = runCli([...args, '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(hash(join(dirs.resumed, 'value-codebook-1bit.arrow'))).toBe(hash(straight.codebook));
  }, 300_000);

  it('train-key stops within 5 s with exit 130, and --resume ends with the uninterrupted bytes', async () => {
    const settings = ['--residuals', '2', '--em-steps', '20', '--heldout', '512', '--device', 'cpu'];
    // the codebook's metadata names the run folder, so both runs use the same one, one after the other
    const straight = await trainKey({ runDir, method: 'em', bits: 1, residuals: 2, em: { maxSteps: 20 }, heldout: 512, backend: new CpuBackend() });
    const want = { codebook: hash(straight.codebook), report: JSON.parse(readFileSync(straight.reportPath, 'utf8')) as { layers: { seconds: number }[] } };
    rmSync(straight.codebook);
    rmSync(straight.reportPath);

    const stopped = await interruptCli(['train-key', runDir, ...settings], () => existsSync(`${straight.codebook}.partial`)); // in layer 1
    expect(stopped.status, stopped.stderr).toBe(130);
    expect(stopped.stopSeconds).toBeLessThan(5);
    expect(stopped.stderr).toMatch(/stopped after 1 finished layer\(s\); rerun with --resume to continue/);
    expect(existsSync(straight.codebook)).toBe(false); // one layer of two is kept as .partial, not as the codebook
    expect(existsSync(straight.reportPath)).toBe(false);

    const resumed = runCli(['train-key', runDir, ...settings, '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(hash(straight.codebook)).toBe(want.codebook);
    const timeless = (r: { layers: { seconds: number }[] }) => r.layers.map(({ seconds: _, ...rest }) => rest);
    expect(timeless(JSON.parse(readFileSync(straight.reportPath, 'utf8')) as typeof want.report)).toEqual(timeless(want.report));
  }, 300_000);
});
