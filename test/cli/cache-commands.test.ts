/**
 * The `--cache` grammar through the commands, on the tiny-llama fixture with random codebook files of 1 and 2 bits
 * in a run folder (bin/run.js → dist/, so build first): generate prints the greedy tokens of the cache the library
 * makes directly from the same codebooks (faithful, and strict in chunks), eval niah records the cache it ran in its
 * manifest, and measure-memory compares dense with both widths, sized by the files' own R.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { createCommvqCache, loadCommvqCodebooks } from '../../src/core/commvq/load-commvq.js';
import { commvqBytesPerToken } from '../../src/core/memory/cache-accounting.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';
import { runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';
import { tempRoot } from '../eval/run/helpers.js';

describe.skipIf(!haveFixtures)('--cache on tiny-llama', () => {
  const root = tempRoot('cache-commands');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const run = join(root, 'run');
  const loaded = haveFixtures ? loadModel(model, { backend: new CpuBackend() }) : undefined;
  const files = haveFixtures ? { 1: writeRandomCodebooks(run, loaded!.config, 1), 2: writeRandomCodebooks(run, loaded!.config, 2) } : undefined;
  // 200 tokens: past the exact window of 128, so the first block is held as codes
  const promptIds = haveFixtures ? loaded!.tokenizer.encode(new FixtureReference('tiny-llama').prompts[1]!).slice(0, 200) : [];
  const promptFile = join(root, 'prompt.txt');
  if (haveFixtures) writeFileSync(promptFile, loaded!.tokenizer.decode(promptIds));

  /** generate --json's output ids with `cache`. */
  const generate = (cache: string): number[] => {
    const r = runCli(['generate', '--model', model, '--prompt-file', promptFile, '--max-new-tokens', '6', '--ignore-eos', '--device', 'cpu', '--cache', cache, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[] };
    expect(out.prompt_ids).toEqual(promptIds);
    return out.output_ids;
  };

  /** The same generation by the library: the codebooks loaded and the cache made directly. */
  const direct = (bits: 1 | 2, prefill: 'faithful' | 'strict'): number[] => {
    const m = loaded!.model;
    const cache = createCommvqCache(m, loadCommvqCodebooks(m, files![bits].key, files![bits].value), { capacity: promptIds.length + 6, prefill });
    try {
      return generateGreedy(m, promptIds, { maxNewTokens: 6, cache }).outputIds;
    } finally {
      cache.dispose();
    }
  };

  it('generate: the greedy tokens of the CommVQ cache the codebooks make, from a run folder or from the files', () => {
    const faithful = direct(1, 'faithful');
    const dense = generateGreedy(loaded!.model, promptIds, { maxNewTokens: 6 }).outputIds;
    expect(faithful).not.toEqual(dense); // the codes change the tokens: the comparisons below tell caches apart
    expect(generate(`commvq:bits=1,run=${run}`)).toEqual(faithful);
    expect(generate(`commvq:key=${files![1].key},value=${files![1].value}`)).toEqual(faithful);
    // strict in chunks of 64 tokens: the tokens of strict in one forward
    expect(generate(`commvq:bits=2,run=${run},prefill=strict,chunk=64`)).toEqual(direct(2, 'strict'));
    expect(generate('dense:chunk=64')).toEqual(dense);
  });

  it('eval niah: runs with --cache commvq:bits=2,run=DIR and records the cache in its manifest', () => {
    const out = join(root, 'niah');
    const r = runCli(['eval', 'niah', '--model', model, '--cache', `commvq:bits=2,run=${run},encoding=gumbel,seed=7`, '--lengths', '300', '--depths', '1', '--out', out, '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { identity: { cache: unknown } };
    expect(manifest.identity.cache).toEqual({
      mode: 'commvq', label: 'commvq-2bit', bits: 2, kv_dtype: 'f32', prefill: 'faithful', codebooks: files![2], value_encoding: 'gumbel', seed: 7,
    });
  });

  it('measure-memory: dense against both widths of the run, sized by the files’ R', () => {
    const r = runCli(['measure-memory', '--model', model, '--cache', `dense,commvq:bits=1,run=${run},commvq:bits=2,run=${run}`, '--context', '1k', '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { points: { cache: string; bytes_per_token: { arithmetic: number } }[] };
    expect(doc.points.map((p) => p.cache)).toEqual(['dense', 'commvq-1bit', 'commvq-2bit']);
    const g = { numLayers: 2, kvHeads: 1, headDim: 128 };
    for (const [i, bits] of [[1, 1], [2, 2]] as const) {
      const b = commvqBytesPerToken(g, { residuals: 2, codeBits: 128 * bits, window: 128 }); // R = 2 as written, not the standard 11 or 21
      expect(doc.points[i]!.bytes_per_token.arithmetic).toBe(b.key + b.value);
    }
  });
});
