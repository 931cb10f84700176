/**
 * The LongBench runner end to end on the demo model (CPU) with small files in the official format: predictions with
 * ids and the fields eval.py needs, the scores and their average, middle truncation to the budget, samsum's
 * newline stop and min length, LongBench-E buckets; two shards in separate folders merged equal the whole run; bad
 * input (unknown task, missing file, malformed line, a budget the model cannot hold) fails clearly and keeps what
 * was finished.
 */
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { scoreLongbenchRecords } from '../../../src/core/eval/longbench/records.js';
import { readPredictionFile } from '../../../src/core/eval/predictions.js';
import { runLongbench, type LongBenchRunOptions } from '../../../src/core/eval/run/longbench-run.js';
import { mergeEvalRuns } from '../../../src/core/eval/run/merge-runs.js';
import { parseShard } from '../../../src/core/eval/shard.js';
import { cpu, demoModel, jsonl, longbenchRow, read, readJson, tempRoot, writeLongbenchData } from './helpers.js';

const root = tempRoot('lb-run');
const model = demoModel(root);
const data = writeLongbenchData(join(root, 'data'), { trec: 3, samsum: 3, triviaqa: 2 });
const tasks = 'trec,samsum,triviaqa';
const options = (out: string, more: Partial<LongBenchRunOptions> = {}): LongBenchRunOptions => ({ modelDir: model, dataDir: data, out: join(root, out), backend: cpu, tasks, ...more });
const predictions = (dir: string, task: string) => read(join(root, dir, 'predictions', `${task}.jsonl`));

describe('eval longbench (runner)', () => {
  let whole: Awaited<ReturnType<typeof runLongbench>>;
  beforeAll(async () => {
    whole = await runLongbench(options('a'));
  });

  it('predicts every example with its id and the fields eval.py scores, and averages the tasks', () => {
    expect(whole).toMatchObject({ outcome: 'complete', done: 8, total: 8, generated: 8 });
    const trec = readPredictionFile(join(root, 'a', 'predictions', 'trec.jsonl')).records;
    expect(trec.map((r) => [r.id, r.index, r.task])).toEqual([
      ['trec-0-a1b2', 0, 'trec'],
      ['trec-1-a1b2', 1, 'trec'],
      ['trec-2-a1b2', 2, 'trec'],
    ]);
    expect(trec[0]).toMatchObject({ answers: ['the quiet harbour 0'], all_classes: ['Location', 'Number', 'Entity', 'Description'], length: 900, truncated: false });
    expect(trec.every((r) => (r.new_tokens as number) <= 64)).toBe(true);
    const s = whole.summary;
    expect(Object.keys(s.scores)).toEqual(['trec', 'samsum', 'triviaqa']);
    expect(s).toMatchObject({ complete: true, counts: { trec: 3, samsum: 3, triviaqa: 2 } });
    // the summary is LongBench's eval.py over the prediction files
    const all = ['trec', 'samsum', 'triviaqa'].flatMap((t) => readPredictionFile(join(root, 'a', 'predictions', `${t}.jsonl`)).records);
    const report = scoreLongbenchRecords(all);
    expect(s.scores).toEqual(report.tasks);
    expect(s.average).toBe(report.average);
    const m = readJson<Record<string, any>>(whole.manifestPath);
    expect(m.identity.protocol).toEqual({ e: false, chat: 'none', max_prompt_tokens: 127500, postprocess: 'default' });
    expect(m.settings.prompt_budget).toEqual({ trec: 8192 - 64, samsum: 8192 - 128, triviaqa: 8192 - 32 });
    expect(m.departures[0]).toMatch(/all 8 paper tasks/);
  });

  it('samsum stops at a newline (or EOS) and never ends before its first token', () => {
    const m = readJson<Record<string, any>>(whole.manifestPath);
    expect(m.settings.newline_token_id).toBe(10); // "\n" in the byte-level demo tokenizer
    for (const r of readPredictionFile(join(root, 'a', 'predictions', 'samsum.jsonl')).records) {
      expect(r.new_tokens as number).toBeGreaterThanOrEqual(1);
      if (r.stop === 'eos') expect((r.new_tokens as number) < 128).toBe(true);
    }
  });

  it('two shards in separate folders, merged, equal the whole run', async () => {
    await runLongbench(options('s0', { shard: parseShard('0/2') }));
    await runLongbench(options('s1', { shard: parseShard('1/2') }));
    const merged = await mergeEvalRuns({ dirs: [join(root, 's0'), join(root, 's1')], out: join(root, 'm') });
    expect(merged.counts).toEqual({ trec: 3, samsum: 3, triviaqa: 2 });
    for (const t of ['trec', 'samsum', 'triviaqa']) expect(predictions('m', t)).toBe(predictions('a', t));
    expect(read(merged.summaryPath)).toBe(read(whole.summaryPath));
  });

  it('truncates in the middle to --max-prompt-tokens; --limit takes the first examples', async () => {
    const r = await runLongbench(options('t', { tasks: 'trec', maxPromptTokens: 120, limit: 2 }));
    expect(r.summary.counts).toEqual({ trec: 2 });
    for (const rec of readPredictionFile(join(root, 't', 'predictions', 'trec.jsonl')).records) {
      expect(rec.truncated).toBe(true);
      expect(rec.prompt_tokens as number).toBeLessThanOrEqual(121);
    }
  });

  it('LongBench-E: the _e files and per-length buckets', async () => {
    writeFileSync(join(data, 'trec_e.jsonl'), jsonl([0, 1, 2].map((i) => longbenchRow('trec', i))));
    const r = await runLongbench(options('e', { tasks: 'trec', e: true, limit: 3 }));
    expect(Object.keys(r.summary.buckets!.trec!)).toEqual(['0-4k', '4-8k', '8k+']);
  });

  it('bad input: unknown task, missing file, a budget the model cannot hold — before anything is written', async () => {
    await expect(runLongbench(options('x', { tasks: 'trec,nope' }))).rejects.toThrow(/unknown LongBench task 'nope'/);
    await expect(runLongbench(options('x', { tasks: 'trec,qasper,lcc' }))).rejects.toThrow(/data: missing qasper\.jsonl, lcc\.jsonl$/);
    await expect(runLongbench(options('x', { dataDir: join(root, 'none') }))).rejects.toThrow(/none: data folder not found/);
    await expect(runLongbench(options('x', { maxPromptTokens: 9000 }))).rejects.toThrow(/maxPromptTokens 9000: the model's context of 8192 tokens .* leaves room for 8128 prompt tokens beside the 64 new tokens of trec/);
    expect(existsSync(join(root, 'x'))).toBe(false);
  });

  it('a malformed line names its file and line; the finished tasks are kept and resumed', async () => {
    const bad = writeLongbenchData(join(root, 'bad'), { trec: 2, samsum: 2 });
    await runLongbench({ ...options('k', { tasks: 'trec' }), dataDir: bad });
    appendFileSync(join(bad, 'samsum.jsonl'), '{"input": "broken\n');
    const failing = runLongbench({ ...options('k', { tasks: 'trec,samsum' }), dataDir: bad });
    await expect(failing).rejects.toThrow(/bad\/samsum\.jsonl:3: not a valid JSON line/);
    expect(readPredictionFile(join(root, 'k', 'predictions', 'trec.jsonl')).records).toHaveLength(2);
    writeLongbenchData(bad, { samsum: 2 });
    const fixed = await runLongbench({ ...options('k', { tasks: 'trec,samsum' }), dataDir: bad });
    expect(fixed).toMatchObject({ outcome: 'complete', resumed: 2, generated: 2 });
  });
});
