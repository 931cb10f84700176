/**
 * The same wrong value gets the same one-line message (and hint) from every command that takes it, run as a user
 * runs them (bin/run.js → dist/, so build first): `--bits 3`, `--cache commvq:bits=3`, an unknown cache kind and a
 * missing codebook file. Everything else on each command line is valid, so the line is the answer to that value.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/fixtures.js';
import { demoModel, tempRoot, writeInfinitebenchData, writeLongbenchData } from '../eval/run/helpers.js';

const root = tempRoot('same-message');
const demo = demoModel(root);
const LLAMA = join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json');
const lb = writeLongbenchData(join(root, 'lb'), { trec: 1 });
const ib = writeInfinitebenchData(join(root, 'ib'), { passkey: 1 });
const cpu = ['--device', 'cpu'];

/** Every command that takes `--bits`, with the rest of a valid command line. */
const BITS_COMMANDS: Record<string, string[]> = {
  'train-key': ['train-key', join(root, 'run'), ...cpu],
  'train-value': ['train-value', join(root, 'run'), '--model', demo, '--data', join(root, 'corpus.jsonl'), ...cpu],
  'measure-memory': ['measure-memory', '--random-weights', LLAMA, '--cache', 'dense,commvq', ...cpu],
  pipeline: ['pipeline', '--out', join(root, 'never'), ...cpu],
};

/** Every command that takes `--cache`, with the rest of a valid command line. */
const CACHE_COMMANDS: Record<string, string[]> = {
  generate: ['generate', '--demo', '--prompt', 'hello', '--max-new-tokens', '2', ...cpu],
  'eval niah': ['eval', 'niah', '--model', demo, '--lengths', '300', '--depths', '1', '--out', join(root, 'niah'), ...cpu],
  'eval longbench': ['eval', 'longbench', '--model', demo, '--data', lb, '--tasks', 'trec', '--out', join(root, 'lbo'), ...cpu],
  'eval infinitebench': ['eval', 'infinitebench', '--model', demo, '--data', ib, '--tasks', 'passkey', '--out', join(root, 'ibo'), ...cpu],
  'measure-memory': ['measure-memory', '--random-weights', LLAMA, '--context', '8k', ...cpu],
};

const missing = join(root, 'none.arrow');

const CASES: { value: string; commands: Record<string, string[]>; args: string[]; stderr: string }[] = [
  { value: '--bits 3', commands: BITS_COMMANDS, args: ['--bits', '3'], stderr: 'commvq: --bits 3: CommVQ bit widths are 1 and 2\n' },
  { value: '--cache commvq:bits=3', commands: CACHE_COMMANDS, args: ['--cache', 'commvq:bits=3'], stderr: 'commvq: --cache commvq:bits=3: CommVQ bit widths are 1 and 2\n' },
  { value: 'an unknown cache kind', commands: CACHE_COMMANDS, args: ['--cache', 'h2o'], stderr: "commvq: --cache h2o: unknown cache kind 'h2o'\n  hint: kinds: dense, commvq, kivi, int4, int2, fp8\n" },
  {
    value: 'a missing codebook file',
    commands: CACHE_COMMANDS,
    args: ['--cache', `commvq:key=${missing},value=${missing}`],
    stderr: `commvq: ${missing}: key codebook not found\n  hint: train one with commvq train-key RUN_DIR\n`,
  },
];

describe.each(CASES)('$value', ({ commands, args, stderr }) => {
  it.each(Object.keys(commands))('%s: one line, exit code 1, nothing on stdout', (name) => {
    const r = runCli([...commands[name]!, ...args]);
    expect(r.stderr).toBe(stderr);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
  });
});
