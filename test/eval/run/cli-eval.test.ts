/**
 * The `commvq eval` commands as a user runs them (the built CLI): a NIAH run on the tiny-llama fixture with --json
 * and its heatmap PNG, LongBench's human output, merge of shards, and bad input reported as one line (exit 1):
 * missing dataset files, a malformed JSON line (its number named), unknown task names, a length longer than the
 * model's context. --random-weights runs a folder without a checkpoint, with random codebooks for commvq:bits=N, and
 * says so in the manifest; without it that cache is refused.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import EvalInfinitebench from '../../../src/commands/eval/infinitebench.js';
import EvalLongbench from '../../../src/commands/eval/longbench.js';
import EvalNiah from '../../../src/commands/eval/niah.js';
import Generate from '../../../src/commands/generate.js';
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

  it.skipIf(!haveFixtures)('eval niah --random-weights: no checkpoint, random codebooks for commvq:bits=1, both in the manifest', () => {
    const model = join(root, 'tiny-llama-config-only');
    mkdirSync(model, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtureDir('tiny-llama'), f), join(model, f));
    const out = join(root, 'niah-random');
    const args = ['eval', 'niah', '--model', model, '--lengths', '260', '--depths', '1', '--cache', 'commvq:bits=1', '--out', out, '--device', 'cpu'];
    const r = runCli([...args, '--random-weights']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^1\/1 examples → .*summary\.json$/m);
    expect(r.stdout).toMatch(/^random weights: the scores are noise \(for timing only\)$/m);
    const m = readJson<Record<string, any>>(join(out, 'manifest.json'));
    expect(m.identity.model).toMatchObject({ name: 'tiny-llama-config-only', random_weights: true });
    expect(m.identity.cache).toMatchObject({ mode: 'commvq', label: 'commvq-1bit-random', bits: 1, codebooks: null, random_codebooks: true });
    expect(readJson(join(out, 'summary.json'))).toMatchObject({ cache: 'commvq-1bit-random', random_weights: true, counts: { niah: 1 } });

    // without --random-weights the same cache has no codebooks: refused before anything loads
    expectOneLineError(runCli([...args.slice(0, -4), '--out', join(root, 'niah-refused'), '--device', 'cpu']), /--cache commvq:bits=1: commvq needs codebooks: key= and value=, or run= and bits=$/);
  });

  it('every eval command that loads a model takes the --random-weights of generate', () => {
    for (const command of [EvalNiah, EvalLongbench, EvalInfinitebench]) expect(command.flags['random-weights']).toBe(Generate.flags['random-weights']);
    expect(Generate.flags['random-weights']).toMatchObject({ type: 'boolean', description: expect.stringMatching(/^ignore the checkpoint: seeded random weights from config\.json/) });
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
