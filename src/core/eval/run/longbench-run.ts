/**
 * `commvq eval longbench`: LongBench's pred.py and eval.py (§8.1) on our engine. Per example: the task's prompt,
 * middle truncation at 127,500 tokens or what the model's context leaves beside the task's new tokens, no chat
 * template (the reference), greedy decoding with the task's max new tokens (samsum: stop at a newline, at least one
 * token), the reference post-processing; then the task scores and their average over the tasks run.
 *
 *   const r = await runLongbench({ modelDir, dataDir: 'LongBench/data', out: 'runs/lb-dense', backend, tasks: 'qasper,samsum' });
 *   r.summary.average
 */
import { basename } from 'node:path';
import { CommvqError, OptionError } from '../../errors.js';
import { EVAL_DEPARTURES } from '../departures.js';
import { longbenchDataPath, readLongbenchFile, type LongBenchExample } from '../longbench/data.js';
import { buildLongbenchPrompt, longbenchGeneration, longbenchPostprocess, newlineTokenId, type LongBenchChatMode } from '../longbench/prompt.js';
import { longbenchRecord } from '../longbench/records.js';
import { parseLongbenchTasks, type LongBenchTask } from '../longbench/tasks.js';
import { REFERENCE_MAX_PROMPT_TOKENS } from '../truncate.js';
import { checkDataFiles, promptBudgets } from './inputs.js';
import { runBenchmark, type EvalRunOptions, type EvalRunResult } from './run-benchmark.js';
import { outputTimes, type EvalSession } from './session.js';
import { longbenchSummary, type LongBenchSummary } from './summary.js';
import type { EvalTask } from './eval-run.js';

export interface LongBenchRunOptions extends EvalRunOptions {
  /** the folder of `<task>.jsonl` files (`<task>_e.jsonl` with `e`) */
  dataDir: string;
  /** a comma list, 'default' (the paper's 8) or 'all' (21) */
  tasks?: string;
  /** LongBench-E: the `_e` files, and scores per length bucket */
  e?: boolean;
  /** 'none' (the reference) or 'template' */
  chat?: LongBenchChatMode;
  /** the truncation cap (default 127,500, lowered to fit the model's context) */
  maxPromptTokens?: number;
}

export async function runLongbench(o: LongBenchRunOptions): Promise<EvalRunResult<LongBenchSummary>> {
  const tasks = parseLongbenchTasks(o.tasks, { e: o.e });
  const files = new Map(tasks.map((t) => [t.name, longbenchDataPath(o.dataDir, t.name, o.e)]));
  checkDataFiles(o.dataDir, [...files.values()], 'the official LongBench files: data.zip of THUDM/LongBench, unpacked');
  const chat = o.chat ?? 'none';
  const cap = o.maxPromptTokens ?? REFERENCE_MAX_PROMPT_TOKENS;
  return runBenchmark(o, {
    benchmark: 'longbench',
    dataDir: o.dataDir,
    summarize: longbenchSummary,
    prepare: (session) => {
      if (chat === 'template' && !session.loaded.tokenizer.hasChatTemplate) {
        throw new OptionError('chat', 'template', `${o.modelDir} has no chat template (tokenizer_config.json chat_template or chat_template.jinja)`);
      }
      const budgets = promptBudgets(session.contextLength, tasks, cap, o.maxPromptTokens !== undefined);
      // pred.py's post_process differs for model names containing "llama2"
      const llama2 = basename(o.modelDir).includes('llama2');
      const ids = { modelEosTokenIds: session.loaded.eosTokenIds, tokenizerEosTokenId: session.tokenizerEosTokenId, newlineTokenId: newlineTokenId(session.loaded.tokenizer) };
      return {
        tasks: tasks.map((task) => longbenchTaskRun(session, task, files.get(task.name)!, { budget: budgets.get(task.name)!, chat, llama2, ids })),
        protocol: { e: o.e ?? false, chat, max_prompt_tokens: cap, postprocess: llama2 ? 'llama2' : 'default' },
        settings: { tasks: tasks.map((t) => t.name), prompt_budget: Object.fromEntries(budgets), eos_token_ids: ids.modelEosTokenIds, newline_token_id: ids.newlineTokenId },
        departures: EVAL_DEPARTURES.longbench,
      };
    },
  });
}

function longbenchTaskRun(
  session: EvalSession,
  task: LongBenchTask,
  file: string,
  s: { budget: number; chat: LongBenchChatMode; llama2: boolean; ids: Parameters<typeof longbenchGeneration>[1] },
): EvalTask<LongBenchExample> {
  const tok = session.loaded.tokenizer;
  const generation = longbenchGeneration(task, s.ids);
  return {
    name: task.name,
    examples: () => readLongbenchFile(file),
    predict: (example) => {
      const prompt = buildLongbenchPrompt(tok, task, example, { maxPromptTokens: s.budget, chat: s.chat });
      if (prompt.ids.length > session.contextLength) {
        throw new CommvqError(`the prompt is ${prompt.ids.length} tokens after truncation, longer than the model's context of ${session.contextLength}`);
      }
      const out = session.generate(prompt.ids, generation);
      const pred = longbenchPostprocess(out.text, { llama2: s.llama2 });
      const record = { ...longbenchRecord(task, example, pred), prompt_tokens: prompt.ids.length, truncated: prompt.truncated, new_tokens: out.outputIds.length, stop: out.stopReason };
      return { record, promptTokens: prompt.ids.length, newTokens: out.outputIds.length, times: outputTimes(out) };
    },
  };
}
