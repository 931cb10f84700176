/**
 * Wrong option values the core finds (OptionError, named by the core's option) printed under each command's own
 * flag, as users run the commands (bin/run.js → dist/): pipeline's settings, collect-kv's window, eval's truncation
 * cap and shard. Also: pipeline --memory-context reads contexts as measure-memory --context does (k = 1024).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { demoModel, tempRoot, writeLongbenchData } from '../eval/run/helpers.js';

const root = tempRoot('option-errors');
const demo = demoModel(root);
const cpu = ['--device', 'cpu'];

/** The whole stderr of a failed command: one line and an optional hint. */
function stderrOf(args: string[]): string {
  const r = runCli(args);
  expect(r.status, r.stdout).toBe(1);
  return r.stderr;
}

describe('core option errors under the command’s flags', () => {
  it('pipeline: --niah-lengths and --memory-context, refused before any stage; 8k is a context there as in measure-memory', () => {
    const pipeline = (...args: string[]) => stderrOf(['pipeline', '--out', join(root, 'never'), ...cpu, ...args]);
    const beyond = "beyond the model's context of 8192 tokens (max_position_embeddings in the demo model)";
    expect(pipeline('--memory-context', '8k', '--niah-lengths', '9000')).toBe(`commvq: --niah-lengths 9000: ${beyond}\n`);
    expect(pipeline('--memory-context', '16k')).toBe(`commvq: --memory-context 16384: ${beyond}\n`);
    expect(pipeline('--memory-context', '8q')).toBe("commvq: --memory-context 8q: '8q' is not a positive whole number, e.g. 8k or 32768\n");
  });

  it('collect-kv: --seq-len beyond the model', () => {
    const corpus = join(root, 'corpus.jsonl');
    expect(stderrOf(['collect-kv', '--model', demo, '--data', corpus, '--out', join(root, 'kv'), '--seq-len', '9000', ...cpu])).toBe(
      "commvq: --seq-len 9000: longer than the model's context of 8192\n",
    );
  });

  it('eval: --max-prompt-tokens and --shard', () => {
    const data = writeLongbenchData(join(root, 'lb'), { trec: 1 });
    const lb = (...args: string[]) => stderrOf(['eval', 'longbench', '--model', demo, '--data', data, '--tasks', 'trec', '--out', join(root, 'lbo'), ...cpu, ...args]);
    expect(lb('--max-prompt-tokens', '9000')).toMatch(/^commvq: --max-prompt-tokens 9000: the model's context of 8192 tokens \(max_position_embeddings\) leaves room for \d+ prompt tokens/);
    expect(lb('--shard', '2/2')).toBe('commvq: --shard 2/2: i must be below n\n  hint: shards are numbered 0..n-1, e.g. 0/2 and 1/2\n');
  });
});
