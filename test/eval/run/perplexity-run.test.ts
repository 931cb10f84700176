/**
 * `eval perplexity` on the tiny-llama fixture: the dense cache's perplexity is exp(mean NLL) of transformers' own
 * logits for the same tokens (the fixture's reference forward); a CommVQ cache's, from one strict prefill per window,
 * equals a run that feeds the window one token at a time; dense and CommVQ in one CLI run give one table, and a rerun
 * resumes (nothing recomputed) while other windows are refused.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCacheFactory } from '../../../src/core/cache-factory.js';
import { rowsNll } from '../../../src/core/eval/perplexity/nll.js';
import { windowMode, windowNll } from '../../../src/core/eval/perplexity/window-nll.js';
import { runPerplexity } from '../../../src/core/eval/run/perplexity-run.js';
import { loadModel } from '../../../src/core/model/load-model.js';
import { disposeWeights } from '../../../src/core/model/weights.js';
import { writeRandomCodebooks } from '../../helpers/codebooks.js';
import { runCli } from '../../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../../helpers/fixtures.js';
import { cpu, read, readJson, tempRoot } from './helpers.js';

const root = tempRoot('perplexity');

describe.skipIf(!haveFixtures)('eval perplexity on tiny-llama', () => {
  const model = fixtureDir('tiny-llama');
  const ref = haveFixtures ? new FixtureReference('tiny-llama') : undefined;
  const corpus = join(root, 'prompt1.txt');
  if (ref) writeFileSync(corpus, ref.prompts[1]!);

  it('dense: exp(mean NLL) of the reference forward’s logits over the same tokens', async () => {
    const ids = ref!.ids('ids.1');
    const logits = ref!.f32('logits.1'); // [T, 512], transformers fp32
    const T = ids.length;
    const expected = Math.exp(rowsNll(logits.subarray(0, (T - 1) * 512), 512, ids.slice(1)).sum / (T - 1));
    const r = await runPerplexity({ modelDir: model, out: join(root, 'dense'), backend: cpu, data: corpus, context: T });
    expect(r.summary.corpus_tokens).toBe(T); // the tokenizer's ids are the fixture's
    expect(r.summary.rows).toHaveLength(1);
    expect(r.summary.rows[0]).toMatchObject({ cache: 'dense', mode: 'prefill', tokens_scored: T - 1, windows: 1, complete: true });
    expect(Math.abs(r.summary.rows[0]!.perplexity! / expected - 1)).toBeLessThan(1e-5);
  });

  it('CommVQ (strict): one prefill per window equals feeding the window token by token', () => {
    const loaded = loadModel(model, { backend: cpu });
    try {
      const books = writeRandomCodebooks(join(root, 'books'), loaded.config, 1);
      const caches = openCacheFactory(loaded.model, { kind: 'commvq', ...books, prefill: 'strict' });
      const ids = Int32Array.from(ref!.ids('ids.1').slice(0, 200)); // 200 tokens: one W = 128 block compressed, then a partial one exact
      const whole = windowNll(loaded.model, caches, ids, 1);
      const cache = caches.make(ids.length);
      let sum = 0;
      for (let i = 0; i < ids.length - 1; i++) {
        const l = loaded.model.forward(ids.subarray(i, i + 1), cache, { logits: 'last' });
        sum += rowsNll(cpu.toFloat32(l), 512, [ids[i + 1]!]).sum;
        l.dispose();
      }
      cache.dispose();
      expect(whole.count).toBe(199);
      expect(Math.abs(whole.sum / sum - 1)).toBeLessThan(1e-6);
      // the compressed cache does change the loss (it is not the dense one by accident)
      const dense = windowNll(loaded.model, openCacheFactory(loaded.model, { kind: 'dense' }), ids, 1);
      expect(Math.abs(whole.sum - dense.sum)).toBeGreaterThan(1e-3);
      caches.dispose();
    } finally {
      disposeWeights(loaded.model.weights);
    }
  });

  it('KIVI (its prompt attends exactly): one decode step per token, so its quantization shows in the loss', () => {
    const loaded = loadModel(model, { backend: cpu });
    try {
      const ids = Int32Array.from(ref!.ids('ids.1').slice(0, 96));
      const kivi = openCacheFactory(loaded.model, { kind: 'kivi', bits: 2, group: 32, residual: 32 });
      const dense = openCacheFactory(loaded.model, { kind: 'dense' });
      expect([windowMode(kivi), windowMode(dense)]).toEqual(['decode-steps', 'prefill']);
      const [k, d] = [windowNll(loaded.model, kivi, ids, 1), windowNll(loaded.model, dense, ids, 1)];
      expect(k.count).toBe(95);
      expect(Number.isFinite(k.sum)).toBe(true);
      expect(Math.abs(k.sum - d.sum)).toBeGreaterThan(1e-3); // a prefill would have attended exactly: the dense loss
      // one kivi prefill of the window scores exactly as dense
      const c = kivi.make(ids.length);
      const l = loaded.model.prefill(ids, c, { logits: 'all' });
      const scored = cpu.sliceRows(l, 0, 95);
      expect(rowsNll(cpu.toFloat32(scored), 512, Array.from(ids.slice(1))).sum).toBeCloseTo(d.sum, 3);
      [scored, l].forEach((t) => t.dispose());
      c.dispose();
    } finally {
      disposeWeights(loaded.model.weights);
    }
  });

  it('CLI: dense and CommVQ in one run, one table; a rerun resumes', () => {
    const run = join(root, 'books');
    const out = join(root, 'both');
    const args = ['eval', 'perplexity', '--model', model, '--data', corpus, '--context', '256', '--stride', '128', '--max-tokens', '400', '--cache', `dense,commvq:bits=1,run=${run}`, '--out', out, '--device', 'cpu'];
    const r = runCli(args);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^perplexity over 400 tokens, 3 windows of 256 \(stride 128\) — commvq protocol/);
    expect(r.stdout).toMatch(/^dense\s+\d+\.\d{4}\s+399 tokens\s+3\/3 windows$/m);
    expect(r.stdout).toMatch(/^commvq-1bit\s+\d+\.\d{4}\s+399 tokens\s+3\/3 windows$/m);
    const summary = readJson<{ rows: { cache: string; perplexity: number }[] }>(join(out, 'summary.json'));
    expect(readJson<{ caches: Record<string, { prefill: string }> }>(join(out, 'manifest.json')).caches['commvq-1bit']!.prefill).toBe('strict');

    const again = runCli([...args, '--json']);
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).summary.rows).toEqual(summary.rows);
    expect(read(join(out, 'windows', 'commvq-1bit.jsonl')).trim().split('\n')).toHaveLength(3); // resumed: no window twice
    const [dense, commvq] = summary.rows;
    expect(dense!.cache).toBe('dense');
    expect(commvq!.perplexity).not.toBe(dense!.perplexity);
  });

  it('a rerun with other windows, or a faithful CommVQ prefill, is refused before any window runs', async () => {
    const out = join(root, 'both');
    const base = { modelDir: model, out, backend: cpu, data: corpus, context: 256, maxTokens: 400 };
    await expect(runPerplexity({ ...base, stride: 64 })).rejects.toThrow(/manifest\.json is a different run: stride is 128 there, 64 here$/);
    await expect(runPerplexity({ ...base, stride: 128, caches: [{ kind: 'commvq', bits: 1, run: join(root, 'books'), prefill: 'faithful' }] })).rejects.toThrow(/^cache: prefill=faithful attends exactly/);
  });
});
