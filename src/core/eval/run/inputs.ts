/**
 * Input checks the runners make before loading a model or generating anything: the dataset files exist, and the
 * prompt budget asked for fits the model's context beside each task's new tokens.
 *
 *   checkDataFiles('LongBench/data', ['LongBench/data/qasper.jsonl'], 'the official LongBench files');
 *   promptBudgets(8192, [longbenchTask('qasper')], 127_500, false)  // Map { qasper → 8064 }
 */
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { OptionError } from '../../errors.js';
import { promptTokenBudget } from '../truncate.js';

/** Every file must exist; the error names the folder and all the missing files at once. */
export function checkDataFiles(dataDir: string, files: readonly string[], what: string): void {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) throw new OptionError('dataDir', dataDir, 'data folder not found', `give a folder of ${what}`);
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length === 0) return;
  const names = missing.map((f) => basename(f)).join(', ');
  throw new OptionError('dataDir', dataDir, `missing ${names}`, `give a folder of ${what}, or choose only the tasks it holds`);
}

/**
 * The prompt budget of each task: min(cap, context − max new tokens). A cap the user gave explicitly that the
 * model cannot hold is an error rather than a silent cut.
 */
export function promptBudgets(context: number, tasks: readonly { name: string; maxNewTokens: number }[], cap: number, explicit: boolean): Map<string, number> {
  if (!Number.isInteger(cap) || cap < 2) throw new OptionError('maxPromptTokens', String(cap), 'must be a whole number of at least 2');
  const budgets = new Map<string, number>();
  for (const t of tasks) {
    const room = context - t.maxNewTokens;
    if (explicit && cap > room) {
      throw new OptionError(
        'maxPromptTokens',
        String(cap),
        `the model's context of ${context} tokens (max_position_embeddings) leaves room for ${Math.max(room, 0)} prompt tokens beside the ${t.maxNewTokens} new tokens of ${t.name}`,
      );
    }
    budgets.set(t.name, promptTokenBudget(context, t.maxNewTokens, cap));
  }
  return budgets;
}
