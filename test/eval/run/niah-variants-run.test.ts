/**
 * The NIAH runner with issue 20's options on the demo model: a raw template and a pass key that varies per cell,
 * scored by contains; the manifest records template, needle generator and seed, a rerun with another seed or
 * template is refused, and merge rescores from the answers each record keeps. A RULER multi-key run asks one key of
 * four. On the command line a bad template is one line before the model loads.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mergeEvalRuns } from '../../../src/core/eval/run/merge-runs.js';
import { runNiah, type NiahRunOptions } from '../../../src/core/eval/run/niah-run.js';
import { expectOneLineError, runCli } from '../../helpers/cli.js';
import { cpu, demoModel, read, readJson, tempRoot } from './helpers.js';

const root = tempRoot('niah-variants');
const model = demoModel(root);
const passkey: Partial<NiahRunOptions> = { template: 'raw', needle: 'The pass key is {digits:5}.', question: ' The pass key is', scorer: 'contains', seed: 9 };
const options = (out: string, more: Partial<NiahRunOptions> = {}): NiahRunOptions => ({ modelDir: model, out: join(root, out), backend: cpu, lengths: [260], depths: [0, 100], ...passkey, ...more });
const records = (dir: string) => read(join(root, dir, 'predictions', 'niah.jsonl')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);

describe('eval niah: templates, varied needles, RULER', () => {
  it('raw template, a pass key per cell, contains: recorded, reproducible, refused with another seed', async () => {
    const r = await runNiah(options('pk'));
    expect(r).toMatchObject({ outcome: 'complete', done: 2 });
    const m = readJson<Record<string, any>>(r.manifestPath);
    expect(m.identity.protocol).toMatchObject({ template: 'raw', needle: 'The pass key is {digits:5}.', question: ' The pass key is', needle_generator: { keys: 1, values: 1, queries: 1, seed: 9 } });
    const [a, b] = records('pk');
    expect(a!.answers).toHaveLength(1);
    expect(a!.answers[0]).toMatch(/^\d{5}$/);
    expect(a!.answers[0]).not.toBe(b!.answers[0]);
    expect(a!.asked).toEqual([`The pass key is ${a!.answers[0]}.`]);
    // the raw prompt: the context, then the question, nothing around them (the demo tokenizer adds no BOS)
    expect(a!.prompt_tokens).toBe(260 - 200 + ' The pass key is'.length);
    const cell = readJson<Record<string, any>>(join(root, 'pk', 'cells', 'demo__dense', `${a!.id}.json`));
    expect(cell).toMatchObject({ scorer: 'contains', needle: a!.asked[0], score: a!.pred.includes(a!.answers[0]) ? 10 : 0 });

    const again = await runNiah(options('pk2'));
    expect(records('pk2').map((x) => x.answers)).toEqual(records('pk').map((x) => x.answers));
    expect(again.summary).toEqual(r.summary);
    await expect(runNiah(options('pk', { seed: 10 }))).rejects.toThrow(/different run: protocol\.needle_generator\.seed is 9 there, 10 here/);
    await expect(runNiah(options('pk', { template: { custom: '{context}{question}' } }))).rejects.toThrow(/different run: protocol\.template is "raw" there, "\{context\}\{question\}" here/);
    const rescored = await mergeEvalRuns({ dirs: [join(root, 'pk')], scorer: 'exact' });
    expect((rescored.summary as typeof r.summary).scorer).toBe('exact');
  });

  it('RULER multi-key: four keyed needles in each cell, one asked, its value expected', async () => {
    const r = await runNiah(options('mk', { template: 'auto', needle: undefined, question: undefined, keys: 4, lengths: [600], depths: [50] })); // byte-level: four needles take ~250 tokens
    expect(r.done).toBe(1);
    const [x] = records('mk');
    expect(x!.answers).toHaveLength(1);
    expect(x!.question).toMatch(/^What are all the special magic numbers for \S+ mentioned in the provided text\?$/);
    expect(readJson<Record<string, any>>(r.manifestPath).identity.protocol).toMatchObject({ needle: 'One of the special magic numbers for {key} is: {digits:7}.', needle_generator: { keys: 4 }, max_new_tokens: 40 });
  });

  it('CLI: a bad --template is one line, exit 1 (needle errors: niah-variants.test.ts)', () => {
    const r = runCli(['eval', 'niah', '--model', model, '--out', join(root, 'bad'), '--device', 'cpu', '--template', 'Question: {question}']);
    expectOneLineError(r, /^commvq: --template Question: \{question\}: is chat, plain, raw, or a text holding \{context\}/, { silentStdout: true });
  });

  it('CLI: a bad --needle is one line, exit 1, and no run folder is made for it', () => {
    const out = join(root, 'bad-needle');
    const r = runCli(['eval', 'niah', '--model', model, '--out', out, '--device', 'cpu', '--needle', 'The pass key is {digits:0}.']);
    expectOneLineError(r, /^commvq: --needle The pass key is \{digits:0\}\.: \{digits:0\}: N must be within 1\.\.64/, { silentStdout: true });
    expect(existsSync(out)).toBe(false);
  });
});
