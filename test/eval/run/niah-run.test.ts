/**
 * The NIAH runner end to end on the demo model (CPU): per-cell predictions and files, summary, manifest, heatmap;
 * identical results as two shards merged and as a fresh run interrupted then resumed (a cut last line included) —
 * with no duplicates; a folder of another run, or the same run with another grid, is refused; merge rescores. Each example's prefill and decode times go
 * to times/niah.jsonl, not into the records.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeEvalRuns } from '../../../src/core/eval/run/merge-runs.js';
import { runNiah, type NiahRunOptions } from '../../../src/core/eval/run/niah-run.js';
import { parseShard } from '../../../src/core/eval/shard.js';
import { cpu, demoModel, isPng, read, readJson, tempRoot } from './helpers.js';
import { expectOneLineError, runCli } from '../../helpers/cli.js';

const root = tempRoot('niah-run');
const model = demoModel(root);
// the demo tokenizer is byte-level: the needle is ~97 tokens, so 320 is about the shortest length with room for it
const grid = { lengths: [320, 400, 480], depths: [0, 50, 100] };
const options = (out: string, more: Partial<NiahRunOptions> = {}): NiahRunOptions => ({ modelDir: model, out: join(root, out), backend: cpu, ...grid, ...more });
const lines = (dir: string) => read(join(root, dir, 'predictions', 'niah.jsonl'));

describe('eval niah (runner)', () => {
  let whole: Awaited<ReturnType<typeof runNiah>>;
  beforeAll(async () => {
    whole = await runNiah(options('a'));
  });

  it('runs every cell and writes predictions, cells, summary, manifest and the heatmap', () => {
    expect(whole.outcome).toBe('complete');
    expect([whole.generated, whole.done, whole.total]).toEqual([9, 9, 9]);
    const records = lines('a').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.map((r) => r.id)).toEqual(['len_320_depth_0', 'len_320_depth_50', 'len_320_depth_100', 'len_400_depth_0', 'len_400_depth_50', 'len_400_depth_100', 'len_480_depth_0', 'len_480_depth_50', 'len_480_depth_100']);
    for (const r of records) {
      expect(r.prompt_tokens as number).toBeLessThanOrEqual(r.context_length as number);
      expect(r.new_tokens as number).toBeLessThanOrEqual(40);
      expect(r).not.toHaveProperty('prefill_ms'); // timings vary by run: they stay out of the records a rerun reproduces
    }
    const times = read(join(root, 'a', 'times', 'niah.jsonl')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(times.map((t) => t.id)).toEqual(records.map((r) => r.id));
    for (const t of times) {
      expect(t.task).toBe('niah');
      expect(t.prefill_ms as number).toBeGreaterThan(0);
      expect(t.decode_ms as number).toBeGreaterThanOrEqual(0);
    }
    expect(readdirSync(join(root, 'a', 'cells', 'demo__dense')).length).toBe(9);
    const cell = readJson(join(root, 'a', 'cells', 'demo__dense', 'len_400_depth_50.json'));
    expect(cell).toMatchObject({ model: 'demo', cache: 'dense', context_length: 400, depth_percent: 50, version: 1, scorer: 'rouge1' });

    const s = whole.summary;
    expect(s).toMatchObject({ benchmark: 'niah', complete: true, counts: { niah: 9 }, lengths: [320, 400, 480], depths: [0, 50, 100] });
    expect(s.matrix.flat().every((v) => v !== null && v >= 0 && v <= 10)).toBe(true);
    expect(readJson(whole.summaryPath)).toEqual(s);

    const m = readJson<Record<string, any>>(whole.manifestPath);
    expect(m.identity.cache).toMatchObject({ mode: 'dense', prefill: 'exact', codebooks: null, bits: 32 });
    expect(m.identity.protocol).toMatchObject({ haystack: { kind: 'filler', seed: 1 }, buffer: 200, max_new_tokens: 40, template: 'plain' });
    expect(m.departures.length).toBeGreaterThan(3);
    expect(m.versions.commvq).toMatch(/^\d+\.\d+\.\d+/);
    expect(m.runs).toHaveLength(1);
    expect(m.runs[0]).toMatchObject({ outcome: 'complete', generated: 9, device: 'cpu' });

    expect(whole.plots?.png).toBe(join(root, 'a', 'niah.png'));
    expect(isPng(whole.plots!.png)).toBe(true);
    expect(read(whole.plots!.svg)).toMatch(/Token Limit/);
  });

  it('a rerun of a finished run generates nothing and keeps its history', async () => {
    const again = await runNiah(options('a'));
    expect([again.generated, again.resumed]).toEqual([0, 9]);
    expect(readJson<Record<string, any>>(again.manifestPath).runs).toHaveLength(2);
    expect(read(again.summaryPath)).toBe(read(whole.summaryPath));
  });

  it('two shards in one folder, merged, equal the whole run', async () => {
    const s0 = await runNiah(options('s', { shard: parseShard('0/2') }));
    const s1 = await runNiah(options('s', { shard: parseShard('1/2') }));
    expect(s0.done + s1.done).toBe(9);
    expect(s0.done).toBeGreaterThan(0);
    expect(existsSync(join(root, 's', 'summary.shard-1-of-2.json'))).toBe(true);
    const merged = await mergeEvalRuns({ dirs: [join(root, 's')] });
    expect(merged.counts).toEqual({ niah: 9 });
    expect(lines('s')).toBe(lines('a'));
    expect(read(merged.summaryPath)).toBe(read(whole.summaryPath));
    expect(isPng(merged.plots!.png)).toBe(true);
    expect(readJson<Record<string, any>>(merged.manifestPath).merged_from).toHaveLength(2);
  });

  it('a fresh run, interrupted, its last line cut by a crash, resumes without duplicates to the same bytes', async () => {
    const stop = new AbortController();
    const first = await runNiah(options('r', { signal: stop.signal, onProgress: (p) => p.done === 3 && stop.abort() }));
    expect(first).toMatchObject({ outcome: 'interrupted', done: 3, total: 9 });
    expect(first.summary.complete).toBe(false);
    appendFileSync(join(root, 'r', 'predictions', 'niah.jsonl'), '{"id":"len_400_depth_0","ind');
    const rest = await runNiah(options('r'));
    expect(rest).toMatchObject({ outcome: 'complete', resumed: 3, generated: 6 });
    expect(lines('r')).toBe(lines('a'));
    expect(read(rest.summaryPath)).toBe(read(whole.summaryPath));
    const runs = readJson<Record<string, any>>(rest.manifestPath).runs;
    expect(runs.map((r: { outcome: string }) => r.outcome)).toEqual(['interrupted', 'complete']);
  });

  it('--limit runs the first cells; a .txt folder haystack; a folder of another run is refused', async () => {
    const few = await runNiah(options('l', { limit: 2 }));
    expect(few.summary.counts).toEqual({ niah: 2 });
    const essays = join(root, 'essays');
    mkdirSync(essays);
    writeFileSync(join(essays, 'b.txt'), 'Second essay. It has sentences. ');
    writeFileSync(join(essays, 'a.txt'), 'First essay<|begin_of_text|>. More words here. ');
    const folder = await runNiah(options('h', { haystack: { kind: 'folder', dir: essays }, limit: 1 }));
    const m = readJson<Record<string, any>>(folder.manifestPath);
    expect(m.identity.protocol.haystack.files.map((f: { name: string }) => f.name)).toEqual(['a.txt', 'b.txt']);
    expect(m.settings).toMatchObject({ special_tokens_removed: expect.any(Number) });
    expect(m.settings.special_tokens_removed).toBeGreaterThan(0);
    expect(m.data_dir).toBe(essays);
    await expect(runNiah(options('a', { needle: 'The secret word is heliotrope.' }))).rejects.toThrow(/manifest\.json is a different run: protocol\.needle is "\\nThe best thing/);
    await expect(runNiah(options('a', { lengths: [9000] }))).rejects.toThrow(/lengths 9000: longer than the model's context of 8192/);
    await expect(runNiah(options('a', { lengths: [250] }))).rejects.toThrow(/lengths 250: too short/);
  });

  it('a rerun with another grid is refused in one line naming the option, before any cell (a summary never mixes two grids)', async () => {
    const before = lines('a');
    await expect(runNiah(options('a', { lengths: [320, 400, 480, 560] }))).rejects.toThrow(`lengths 320,400,480,560: ${join(root, 'a')} was planned with lengths 320,400,480`);
    await expect(runNiah(options('a', { depths: [0, 100] }))).rejects.toThrow(`depths 0,100: ${join(root, 'a')} was planned with depths 0,50,100`);
    const cli = runCli(['eval', 'niah', '--model', model, '--out', join(root, 'a'), '--lengths', '320,400', '--depths', '0,50,100', '--device', 'cpu']);
    expectOneLineError(cli, new RegExp(`^commvq: --lengths 320,400: ${join(root, 'a')} was planned with lengths 320,400,480$`), { silentStdout: true });
    expect(cli.stderr).toContain('hint: rerun with those lengths to resume it, or use another run folder');
    expect(lines('a')).toBe(before);
    expect(readJson<Record<string, any>>(whole.summaryPath)).toMatchObject({ counts: { niah: 9 }, planned: { niah: 9 }, complete: true });
  });

  it('random weights and random codebooks: recorded in the identity, so a real run never resumes into their folder', async () => {
    const random = await runNiah(options('rw', { randomWeights: true, cache: { kind: 'commvq', bits: 1 }, lengths: [320], depths: [50] }));
    expect(random).toMatchObject({ outcome: 'complete', done: 1 });
    const m = readJson<Record<string, any>>(random.manifestPath);
    expect(m.identity.model.random_weights).toBe(true);
    expect(m.identity.cache).toMatchObject({ label: 'commvq-1bit-random', codebooks: null, random_codebooks: true, prefill: 'faithful' });
    expect(readdirSync(join(root, 'rw', 'cells'))).toEqual(['demo__commvq-1bit-random']);
    await expect(runNiah(options('rw', { randomWeights: true, lengths: [320], depths: [50] }))).rejects.toThrow(/different run: cache\.bits is 1 there, 32 here/);
    await expect(runNiah(options('rw', { cache: { kind: 'commvq', bits: 1 } }))).rejects.toThrow(/cache: commvq needs codebooks/);
    await expect(runNiah(options('a', { randomWeights: true }))).rejects.toThrow(/manifest\.json is a different run: model\.random_weights is absent there, true here/);
  });

  it('merge refuses a folder that is not a run; rescoring by merge: the exact scorer gives 0 or 10 per cell', async () => {
    await expect(mergeEvalRuns({ dirs: [join(root, 'nothing-here')] })).rejects.toThrow(/nothing-here: no eval manifest/);
    const r = await mergeEvalRuns({ dirs: [join(root, 's')], scorer: 'exact' });
    const s = r.summary as typeof whole.summary;
    expect(s.scorer).toBe('exact');
    expect(s.matrix.flat().every((v) => v === 0 || v === 10)).toBe(true);
    expect(readJson<Record<string, any>>(join(root, 's', 'cells', 'demo__dense', 'len_320_depth_0.json')).scorer).toBe('exact');
    expect(readJson<Record<string, any>>(join(root, 's', 'manifest.json')).settings.scorer).toBe('exact');
  });
});
