/**
 * The small train-value setup the data-parallel tests share (CPU ranks and NCCL): a corpus cut from tiny-llama's
 * reference prompt, collect-kv and make-scale over it once into `base`, and fresh run folders seeded with its manifest
 * and scales, one per run.
 *
 *   const runs = valueRunSetup('commvq-dp-');
 *   beforeAll(() => runs.prepare());
 *   trainValue({ runDir: runs.runDir(), modelDir: runs.model, corpus: runs.corpus, … });
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { makeScale } from '../../src/core/kv/make-scale.js';
import { FixtureReference, fixtureDir, haveFixtures } from './fixtures.js';

export function valueRunSetup(prefix: string) {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const corpus = join(work, 'corpus.jsonl');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const base = join(work, 'base');
  let n = 0;
  return {
    work,
    corpus,
    model,
    /** A new run folder holding base's manifest and scales. */
    runDir(): string {
      const d = join(work, `run${n++}`);
      for (const f of ['manifest.json', 'scale.arrow']) cpSync(join(base, f), join(d, f));
      return d;
    },
    /** Writes the corpus and collects 4 windows of 128 tokens into base (on the CPU), then its scales. */
    async prepare(): Promise<void> {
      const words = new FixtureReference('tiny-llama').prompts[1]!.split(' ');
      writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 60).join(' ') })).join('\n'));
      await collectKv({ modelDir: model, corpus, runDir: base, backend: new CpuBackend(), tokens: 4 * 128, seqLen: 128 });
      makeScale(base);
    },
    dispose(): void {
      rmSync(work, { recursive: true, force: true });
    },
  };
}
