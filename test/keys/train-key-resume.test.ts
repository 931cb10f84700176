/**
 * train-key stops at the next EM step when its signal aborts (Ctrl-C in the command), keeping the finished layers and
 * dropping the one in progress, and `resume` trains only the rest: the result equals an uninterrupted run (layers
 * are seeded by their own numbers).
 * A resume under different settings is refused rather than mixed.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { trainKey, type TrainKeyOptions } from '../../src/core/keys/train-key.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-trainkey-resume-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A demo-model run with both layers collected: 9 windows of 512 tokens. */
async function collected(name: string): Promise<string> {
  const demo = join(work, 'demo');
  writeDemoModel(demo);
  const corpus = join(work, 'corpus.jsonl');
  const words = ['keys', 'rotate', 'codebook', 'attention', 'residual', 'quantize', 'commute', 'vector', 'the', 'a'];
  writeFileSync(corpus, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: Array.from({ length: 300 }, (_, k) => words[(i * 3 + k * k) % words.length]).join(' ') })).join('\n'));
  const runDir = join(work, name);
  await collectKv({ modelDir: demo, corpus, runDir, backend: new CpuBackend(), tokens: 4608, seqLen: 512, seed: 1 });
  return runDir;
}

describe('train-key, interrupted and resumed', () => {
  let runDir = '';
  beforeAll(async () => {
    runDir = await collected('run');
  }, 120_000);
  const options = (o: Partial<TrainKeyOptions> = {}): TrainKeyOptions => ({
    runDir, method: 'em', bits: 1, residuals: 2, layers: '0,1', heldout: 512, em: { maxSteps: 2 }, backend: new CpuBackend(), ...o,
  });

  it('keeps the finished layer when stopped mid-layer, and resuming trains the rest to the uninterrupted result', async () => {
    const whole = await trainKey(options());
    expect(whole.complete).toBe(true);
    const want = readKeyCodebook(whole.codebook);

    rmSync(whole.codebook);
    const abort = new AbortController();
    // Ctrl-C during layer 1 (past half of the progress): layer 0 is kept, layer 1 dropped
    const stopped = await trainKey(options({ signal: abort.signal, onProgress: (done, total) => done > total / 2 && abort.abort() }));
    expect(stopped.complete).toBe(false);
    expect(stopped.report.layers.map((l) => l.layer)).toEqual([0]);
    // the finished layer waits under the .partial name; nothing is under the final name until every layer is done
    expect(existsSync(stopped.codebook)).toBe(false);
    expect([...readKeyCodebook(`${stopped.codebook}.partial`).layers.keys()]).toEqual([0]);

    let trained = 0;
    const resumed = await trainKey(options({ resume: true, onProgress: (done) => (trained = Math.max(trained, done)) }));
    expect(resumed.complete).toBe(true);
    expect(resumed.report.layers.map((l) => l.layer)).toEqual([0, 1]);
    const got = readKeyCodebook(resumed.codebook);
    for (const layer of [0, 1]) expect(got.layers.get(layer)!.theta).toEqual(want.layers.get(layer)!.theta);
    const timeless = (layers: typeof whole.report.layers) => layers.map(({ seconds: _, ...rest }) => rest);
    expect(timeless(resumed.report.layers)).toEqual(timeless(whole.report.layers));
  }, 300_000);

  it('refuses to resume a codebook trained with other settings', async () => {
    await expect(trainKey(options({ resume: true, seed: 7 }))).rejects.toThrow(/other settings \(seed 42 ≠ 7\)/);
  }, 60_000);
});
