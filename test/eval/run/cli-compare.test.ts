/**
 * `commvq eval niah|longbench --cache A,B,...` as a user runs it (the built CLI, so build first) on the tiny-llama
 * fixture, two NIAH cells per cache: every cache gets its own run folder and one comparison is written beside them;
 * a half-done cache continues and a finished one is skipped without a new run entry; the shards of a comparison
 * merge into the same numbers as the unsharded one; one cache keeps today's layout; mixing the two layouts and the
 * same cache twice are refused in one line.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ComparisonResult } from '../../../src/core/eval/run/compare.js';
import type { ComparisonSummary } from '../../../src/core/eval/run/comparison.js';
import type { NiahSummary } from '../../../src/core/eval/run/niah-run.js';
import type { EvalManifest } from '../../../src/core/eval/run/manifest.js';
import { averageBits, commvqBytesPerToken, denseBytesPerToken, fp8BytesPerToken, intBytesPerToken } from '../../../src/core/memory/cache-accounting.js';
import { loadModel } from '../../../src/core/model/load-model.js';
import { writeRandomCodebooks } from '../../helpers/codebooks.js';
import { expectOneLineError, runCli } from '../../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../../helpers/fixtures.js';
import { cpu, demoModel, isPng, readJson, tempRoot, writeLongbenchData } from './helpers.js';

describe.skipIf(!haveFixtures)('commvq eval --cache A,B,... (CLI)', () => {
  const root = tempRoot('cli-compare');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const config = haveFixtures ? loadModel(model, { backend: cpu }).config : undefined;
  const books = join(root, 'books');
  if (config) writeRandomCodebooks(books, config, 2); // R = 2: quick to encode on the CPU
  const caches = `dense,kivi:bits=2,int4,fp8,commvq:bits=2,run=${books}`;
  const names = ['dense', 'kivi-bits2', 'int4', 'fp8', 'commvq-bits2'];
  const niah = (out: string, ...more: string[]) => runCli(['eval', 'niah', '--model', model, '--lengths', '260,300', '--depths', '1', '--out', out, '--device', 'cpu', ...more]);
  const out = join(root, 'cmp');
  const runsOf = (name: string) => readJson<EvalManifest>(join(out, name, 'manifest.json')).runs;

  it('one command: a run folder per cache, one comparison (table, JSON, heatmaps side by side); a rerun continues, then skips', () => {
    // half done: the first cell of each cache
    const first = niah(out, '--cache', caches, '--limit', '1');
    expect(first.status, first.stderr).toBe(0);
    for (const name of names) expect(first.stdout).toMatch(new RegExp(`^${name}: NIAH rouge1: mean \\d+\\.\\d\\d / 10 over 1 cells \\(1/1 examples\\) → ${out}/${name}/summary\\.json$`, 'm'));

    // the whole grid: each cache continues from its cell (a new request, so each folder is reopened and resumed)
    const r = niah(out, '--cache', caches, '--json');
    expect(r.status, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as ComparisonResult;
    expect(result.outcome).toBe('complete');
    expect(result.runs.map((x) => [x.name, x.skipped, x.result?.resumed, x.result?.done])).toEqual(names.map((n) => [n, false, 1, 2]));
    expect(readdirSync(out).sort()).toEqual([...names, 'comparison.json', 'comparison.png', 'comparison.svg'].sort());
    expect(isPng(result.plots!.png)).toBe(true);

    const c = readJson<ComparisonSummary>(join(out, 'comparison.json'));
    expect(c).toEqual(result.summary);
    expect(c).toMatchObject({ benchmark: 'niah', model: 'tiny-llama', shard: '0/1', complete: true, metric: 'NIAH rouge1 (0-10)', columns: ['overall', '260', '300'] });
    expect(c.caches.map((x) => [x.name, x.cache, x.label])).toEqual([
      ['dense', 'dense', 'dense'],
      ['kivi-bits2', 'kivi:bits=2', 'kivi-2bit-g32-r128'],
      ['int4', 'int4', 'int4-g64'],
      ['fp8', 'fp8', 'fp8'],
      ['commvq-bits2', `commvq:run=${books},bits=2`, 'commvq-2bit'],
    ]);
    // each row is its own folder's summary; the caches do not all score alike (the comparison is not of copies)
    for (const row of c.caches) {
      const own = readJson<NiahSummary>(join(out, row.name, 'summary.json'));
      expect(row.scores).toEqual({ overall: own.overall, ...own.by_length });
      expect(row.counts).toEqual({ niah: 2 });
      expect(readJson<EvalManifest>(join(out, row.name, 'manifest.json')).identity.cache.label).toBe(row.label);
    }
    expect(new Set(c.caches.map((x) => JSON.stringify(x.scores))).size).toBeGreaterThan(1);
    // average bits from the byte arithmetic (the CPU holds exact values in f32; the codebooks' R is 2)
    const g = { numLayers: config!.numLayers, kvHeads: config!.numKvHeads, headDim: config!.headDim };
    const commvq = commvqBytesPerToken(g, { residuals: 2, codeBits: 2 * g.kvHeads * g.headDim, window: 128 });
    expect(c.caches.map((x) => x.average_bits)).toEqual([
      averageBits(g, denseBytesPerToken(g, 'f32')), 3, averageBits(g, intBytesPerToken(g, 4, 64)), averageBits(g, fp8BytesPerToken(g)), averageBits(g, commvq.key + commvq.value),
    ]);
    expect(c.caches.map((x) => x.average_bits)).toEqual([32, 3, 4.5, 8.25, expect.any(Number)]);

    // a rerun of the same command skips every finished cache: nothing loads, no run entry is added
    const again = niah(out, '--cache', caches);
    expect(again.status, again.stderr).toBe(0);
    for (const name of names) expect(again.stdout).toContain(`${name}: finished earlier with the same request, skipped → ${out}/${name}/summary.json`);
    for (const name of names) expect(runsOf(name)).toHaveLength(2);
    const table = again.stdout.split('\n');
    const head = table.indexOf('tiny-llama · NIAH rouge1 (0-10)');
    expect(table[head + 1]).toMatch(/^cache +avg bits +overall +260 +300$/);
    for (const [i, row] of c.caches.entries()) {
      expect(table[head + 2 + i]!.split(/ +/)).toEqual([row.name, row.average_bits!.toFixed(2), ...['overall', '260', '300'].map((k) => row.scores[k]!.toFixed(2))]);
    }
    expect(again.stdout).toContain(`comparison → ${out}/comparison.json\nheatmaps → ${out}/comparison.png, ${out}/comparison.svg`);
  });

  it('shards of a comparison merge into the unsharded numbers', () => {
    const sharded = join(root, 'sharded');
    for (const s of ['0/2', '1/2']) {
      const r = niah(sharded, '--cache', 'dense,int4', '--shard', s);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`shard ${s} is done; combine the shards with commvq eval merge ${sharded}`);
    }
    expect(existsSync(join(sharded, 'dense', 'manifest.shard-1-of-2.json'))).toBe(true);
    const m = runCli(['eval', 'merge', sharded, '--json']);
    expect(m.status, m.stderr).toBe(0);
    const merged = JSON.parse(m.stdout) as { summary: ComparisonSummary };
    const whole = readJson<ComparisonSummary>(join(out, 'comparison.json'));
    expect(merged.summary).toMatchObject({ shard: '0/1', complete: true });
    expect(merged.summary.caches.map((x) => [x.name, x.scores, x.average_bits])).toEqual(whole.caches.filter((x) => x.name === 'dense' || x.name === 'int4').map((x) => [x.name, x.scores, x.average_bits]));
    expect(readJson(join(sharded, 'comparison.json'))).toEqual(merged.summary);
  });

  it('one cache keeps the layout of a single run', () => {
    const single = join(root, 'single');
    const r = niah(single, '--cache', 'int4', '--limit', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(single).sort()).toEqual(['cells', 'manifest.json', 'niah.png', 'niah.svg', 'predictions', 'summary.json', 'times']);
    expect(r.stdout).toMatch(/^NIAH rouge1: mean \d+\.\d\d \/ 10 over 1 cells\n1\/1 examples → .*single\/summary\.json\n/);

    // the two layouts never mix, and a list names each cache once
    expectOneLineError(niah(single, '--cache', 'dense,int4'), /single holds the run of one cache \(.*single\/manifest\.json\): a comparison runs each cache in a folder of its own$/);
    expectOneLineError(niah(out, '--cache', 'int4'), /cmp holds a comparison of several caches \(.*cmp\/comparison\.json\), not the run of one$/);
    expectOneLineError(niah(join(root, 'twice'), '--cache', 'dense,int4,dense'), /^commvq: --cache dense,int4,dense: dense is given twice$/);
  });

  it('eval longbench --cache A,B: the tasks and their average per cache', () => {
    const demo = demoModel(root);
    const data = writeLongbenchData(join(root, 'data'), { trec: 1, samsum: 1 });
    const lb = join(root, 'lb');
    const r = runCli(['eval', 'longbench', '--model', demo, '--data', data, '--tasks', 'trec,samsum', '--cache', 'dense,fp8', '--out', lb, '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const c = (JSON.parse(r.stdout) as ComparisonResult).summary;
    expect(c).toMatchObject({ benchmark: 'longbench', metric: 'LongBench (0-100)', columns: ['trec', 'samsum', 'average'], complete: true });
    for (const row of c.caches) {
      const own = readJson<{ scores: Record<string, number>; average: number }>(join(lb, row.name, 'summary.json'));
      expect(row.scores).toEqual({ ...own.scores, average: own.average });
    }
  });
});
