/**
 * `eval gsm8k` on the tiny-llama fixture over a few examples: the CLI's result and human line, predictions with the
 * extracted number and the gold one, the same predictions from JSON lines and Parquet, shards merged equal to the
 * whole run, and a rerun that resumes (nothing generated twice).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { runGsm8k } from '../../../src/core/eval/run/gsm8k-run.js';
import { mergeEvalRuns } from '../../../src/core/eval/run/merge-runs.js';
import { parseShard } from '../../../src/core/eval/shard.js';
import { expectOneLineError, runCli } from '../../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../../helpers/fixtures.js';
import { cpu, jsonl, read, readJson, tempRoot } from './helpers.js';

const root = tempRoot('gsm8k');
const ROWS = [
  { question: 'Tom has 5 apples and eats 2. How many apples are left?', answer: 'He has 5 - 2 = <<5-2=3>>3 left.\n#### 3' },
  { question: 'A box holds 12 eggs. How many eggs are in 3 boxes?', answer: '3 * 12 = <<3*12=36>>36\n#### 36' },
  { question: 'Sara had $1,200 and spent $200. How much is left?', answer: '1200 - 200 = <<1200-200=1000>>1000\n#### 1,000' },
];

describe.skipIf(!haveFixtures)('eval gsm8k on tiny-llama', () => {
  const model = fixtureDir('tiny-llama');
  const data = join(root, 'test.jsonl');
  writeFileSync(data, jsonl(ROWS));
  const common = { modelDir: model, backend: cpu, maxNewTokens: 6, shots: 0 }; // the exemplars' text is tested in gsm8k.test.ts

  it('CLI: a few examples, predictions with extracted and gold numbers, a labelled score line; a rerun resumes', () => {
    const out = join(root, 'cli');
    const args = ['eval', 'gsm8k', '--model', model, '--data', data, '--limit', '2', '--shots', '2', '--max-new-tokens', '6', '--out', out, '--device', 'cpu'];
    const r = runCli(args);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^GSM8K accuracy \d+\.\d\d% \(\d\/2\) — commvq protocol: 8-shot CoT, greedy, final-number exact match\n2\/2 examples → /);
    const preds = read(join(out, 'predictions', 'gsm8k.jsonl')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(preds.map((p) => [p.id, p.gold])).toEqual([['0', '3'], ['1', '36']]);
    for (const p of preds) expect(p).toMatchObject({ task: 'gsm8k', rule: expect.stringMatching(/^(hashes|answer-is|last-number|none)$/), new_tokens: expect.any(Number) });
    expect(readJson(join(out, 'manifest.json'))).toMatchObject({ identity: { benchmark: 'gsm8k', protocol: { template: 'fewshot', shots: 2, max_new_tokens: 6 } } });
    const again = runCli([...args, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ generated: 0, resumed: 2, summary: { counts: { gsm8k: 2 } } });
    expectOneLineError(runCli([...args.slice(0, 5), join(root, 'missing.jsonl'), ...args.slice(6)]), /--data .*missing\.jsonl: file not found$/);
  });

  it('Parquet gives the same predictions; shards merged equal the whole run', async () => {
    const parquet = join(root, 'test.parquet');
    writeFileSync(parquet, Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'question', data: ROWS.map((r) => r.question) }, { name: 'answer', data: ROWS.map((r) => r.answer) }] })));
    const whole = await runGsm8k({ ...common, data, out: join(root, 'whole') });
    const fromParquet = await runGsm8k({ ...common, data: parquet, out: join(root, 'parquet') });
    expect(whole.summary.counts).toEqual({ gsm8k: 3 });
    const predictions = (dir: string) => readFileSync(join(root, dir, 'predictions', 'gsm8k.jsonl'), 'utf8');
    expect(predictions('parquet')).toBe(predictions('whole'));
    for (const s of ['0/2', '1/2']) await runGsm8k({ ...common, data, out: join(root, 'shards'), shard: parseShard(s) });
    const merged = await mergeEvalRuns({ dirs: [join(root, 'shards')] });
    expect(predictions('shards')).toBe(predictions('whole'));
    expect(merged.summary).toEqual(whole.summary);
  });
});
