/**
 * The `commvq eval` commands as a user runs them (the built CLI): a NIAH run on the tiny-llama fixture with --json
 * and its heatmap PNG, LongBench's human output, merge of shards, and bad input reported as one line (exit 1):
 * missing dataset files, a malformed JSON line (its number named), unknown task names, a length longer than the
 * model's context.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLongbench } from '../../../src/core/eval/run/longbench-run.js';
import { parseShard } from '../../../src/core/eval/shard.js';
import { expectOneLineError, runCli } from '../../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../../helpers/fixtures.js';
import { cpu, demoModel, isPng, jsonl, longbenchRow, readJson, tempRoot, writeLongbenchData } from './helpers.js';

const root = tempRoot('cli-eval');
const demo = demoModel(root);
const data = writeLongbenchData(join(root, 'data'), { trec: 2, samsum: 2 });


describe('commvq eval (CLI)', () => {
  it.skipIf(!haveFixtures)('eval niah on tiny-llama: --json result, cell files, heatmap PNG', () => {
    const out = join(root, 'niah');
    const r = runCli(['eval', 'niah', '--model', fixtureDir('tiny-llama'), '--lengths', '260,300', '--depths', '3', '--out', out, '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { outcome: string; done: number; summary: { counts: object; model: string; matrix: unknown[][] }; plots: { png: string } };
    expect(json).toMatchObject({ outcome: 'complete', done: 6, summary: { counts: { niah: 6 }, model: 'tiny-llama' } });
    expect(json.summary.matrix).toHaveLength(3);
    expect(isPng(json.plots.png)).toBe(true);
    expect(readJson(join(out, 'cells', 'tiny-llama__dense', 'len_300_depth_50.json'))).toMatchObject({ model: 'tiny-llama', cache: 'dense', depth_percent: 50 });
  });

  it('eval longbench prints the scores and where they are; merge combines shards', async () => {
    const r = runCli(['eval', 'longbench', '--model', demo, '--data', data, '--tasks', 'trec', '--limit', '1', '--out', join(root, 'lb'), '--device', 'cpu']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^trec \d+(\.\d+)? \| average \d+(\.\d+)?\n1\/1 examples → .*lb\/summary\.json\n$/);

    for (const s of ['0/2', '1/2']) await runLongbench({ modelDir: demo, dataDir: data, out: join(root, `lb${s[0]}`), backend: cpu, tasks: 'trec,samsum', shard: parseShard(s) });
    const m = runCli(['eval', 'merge', join(root, 'lb0'), join(root, 'lb1'), '--out', join(root, 'lbm'), '--json']);
    expect(m.status, m.stderr).toBe(0);
    const merged = JSON.parse(m.stdout) as { counts: object; summary: { complete: boolean } };
    expect(merged).toMatchObject({ counts: { trec: 2, samsum: 2 }, summary: { complete: true } });
    expect(readJson(join(root, 'lbm', 'summary.json'))).toMatchObject({ counts: { trec: 2, samsum: 2 }, shard: '0/1' });
  });

  it('bad input is one line with exit code 1', () => {
    const lb = (...args: string[]) => runCli(['eval', 'longbench', '--model', demo, '--out', join(root, 'bad-out'), '--device', 'cpu', ...args]);
    expectOneLineError(lb('--data', data), /data: missing qasper\.jsonl, qmsum\.jsonl, multi_news\.jsonl, triviaqa\.jsonl, lcc\.jsonl, repobench-p\.jsonl$/);

    const broken = join(root, 'broken');
    writeLongbenchData(broken, { trec: 1 });
    writeFileSync(join(broken, 'trec.jsonl'), jsonl([longbenchRow('trec', 0)]) + '{"input": "cut\n');
    expectOneLineError(lb('--data', broken, '--tasks', 'trec'), /broken\/trec\.jsonl:2: not a valid JSON line/);

    const niah = runCli(['eval', 'niah', '--model', demo, '--lengths', '4k..16k', '--out', join(root, 'bad-niah'), '--device', 'cpu']);
    expectOneLineError(niah, /--lengths 16000: longer than the model's context of 8192 tokens/);

    const ib = runCli(['eval', 'infinitebench', '--model', demo, '--data', data, '--tasks', 'passkey,nope', '--out', join(root, 'bad-ib'), '--json']);
    expect(ib.status).toBe(1);
    expect(JSON.parse(ib.stdout)).toMatchObject({ error: { message: "unknown InfiniteBench task 'nope'", hint: expect.stringMatching(/^known tasks: passkey, /) } });
  });
});
