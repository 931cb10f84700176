/**
 * The InfiniteBench runner end to end on the demo model (CPU) with small files in the official format: the
 * intended templates (the reference-literal mode on request), ground truths with option letters, each task's
 * scoring rule; a bad example stops the run with its id named and keeps the examples before it, and the run
 * resumes once the file is fixed.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scoreInfinitebenchRecords } from '../../../src/core/eval/infinitebench/records.js';
import { readPredictionFile } from '../../../src/core/eval/predictions.js';
import { runInfinitebench, type InfiniteBenchRunOptions } from '../../../src/core/eval/run/infinitebench-run.js';
import { cpu, demoModel, infinitebenchRow, jsonl, readJson, tempRoot, writeInfinitebenchData } from './helpers.js';

const root = tempRoot('ib-run');
const model = demoModel(root);
const data = writeInfinitebenchData(join(root, 'data'), { passkey: 3, kv_retrieval: 2, code_debug: 2 });
const options = (out: string, more: Partial<InfiniteBenchRunOptions> = {}): InfiniteBenchRunOptions => ({
  modelDir: model,
  dataDir: data,
  out: join(root, out),
  backend: cpu,
  tasks: 'passkey,kv_retrieval,code_debug',
  ...more,
});

describe('eval infinitebench (runner)', () => {
  it('predicts, records the ground truth the scorer needs, and scores each task', async () => {
    const r = await runInfinitebench(options('a'));
    expect(r).toMatchObject({ outcome: 'complete', done: 7 });
    const debug = readPredictionFile(join(root, 'a', 'predictions', 'code_debug.jsonl')).records;
    expect(debug.map((x) => x.ground_truth)).toEqual([
      ['f0', 'A'],
      ['f1', 'A'],
    ]);
    const passkey = readPredictionFile(join(root, 'a', 'predictions', 'passkey.jsonl')).records;
    expect(passkey.map((x) => [x.id, x.ground_truth])).toEqual([
      ['0', ['7100']],
      ['1', ['7101']],
      ['2', ['7102']],
    ]);
    expect(passkey.every((x) => (x.new_tokens as number) <= 6 && x.truncated === false)).toBe(true);
    const all = ['passkey', 'kv_retrieval', 'code_debug'].flatMap((t) => readPredictionFile(join(root, 'a', 'predictions', `${t}.jsonl`)).records);
    const report = scoreInfinitebenchRecords(all);
    expect(r.summary).toMatchObject({ means: report.means, scores: report.tasks, average: report.average, complete: true });
    const m = readJson<Record<string, any>>(r.manifestPath);
    expect(m.identity.protocol).toEqual({ prompt_mode: 'intended', max_prompt_tokens: 127500 });
    expect(m.departures[0]).toMatch(/intended llama templates/);
    expect(m.settings.templates.passkey).toBe('llama (spec §8.2)');
  });

  it('the reference-literal prompt (context only) is a different run, recorded as such', async () => {
    const r = await runInfinitebench(options('lit', { tasks: 'passkey', promptMode: 'reference-literal' }));
    const rec = readPredictionFile(join(root, 'lit', 'predictions', 'passkey.jsonl')).records;
    const intended = readPredictionFile(join(root, 'a', 'predictions', 'passkey.jsonl')).records;
    expect(rec[0]!.prompt_tokens as number).toBeLessThan(intended[0]!.prompt_tokens as number);
    expect(readJson<Record<string, any>>(r.manifestPath).departures.some((d: string) => d.startsWith('prompts use'))).toBe(false);
    await expect(runInfinitebench(options('a', { tasks: 'passkey', promptMode: 'reference-literal' }))).rejects.toThrow(/different run: protocol\.prompt_mode/);
  });

  it('a bad example stops the run naming it; the examples before it are kept, and a rerun resumes', async () => {
    const dir = join(root, 'bad');
    writeInfinitebenchData(dir, { code_debug: 3 });
    const rows = [0, 1, 2].map((i) => infinitebenchRow('code_debug', i));
    rows[1] = { ...rows[1], answer: 'not-an-option' };
    writeFileSync(join(dir, 'code_debug.jsonl'), jsonl(rows));
    const run = runInfinitebench(options('k', { dataDir: dir, tasks: 'code_debug' }));
    await expect(run).rejects.toThrow(/^code_debug example 1: the answer "not-an-option" is not among options A–D$/);
    expect(readPredictionFile(join(root, 'k', 'predictions', 'code_debug.jsonl')).records.map((x) => x.id)).toEqual(['0']);
    const m = readJson<Record<string, any>>(join(root, 'k', 'manifest.json'));
    expect(m.runs[0]).toMatchObject({ outcome: 'failed', generated: 1 });
    expect(readJson<Record<string, any>>(join(root, 'k', 'summary.json')).counts).toEqual({ code_debug: 1 });
    writeInfinitebenchData(dir, { code_debug: 3 });
    const fixed = await runInfinitebench(options('k', { dataDir: dir, tasks: 'code_debug' }));
    expect(fixed).toMatchObject({ outcome: 'complete', resumed: 1, generated: 2, done: 3 });
  });

  it('unknown tasks and missing files are refused before the model loads', async () => {
    await expect(runInfinitebench(options('x', { tasks: 'passkey,longbook' }))).rejects.toThrow(/unknown InfiniteBench task 'longbook'/);
    await expect(runInfinitebench(options('x', { tasks: 'passkey,math_find' }))).rejects.toThrow(/missing math_find\.jsonl/);
  });
});
