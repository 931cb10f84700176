/**
 * `commvq eval infinitebench`: InfiniteBench (§8.2) on our engine. Per example: the intended llama template (the
 * reference code's context-only prompt on request), middle truncation at 127,500 tokens or what the model's context
 * leaves beside the task's new tokens, always decoded and re-encoded as the reference does, no chat template,
 * greedy decoding with the task's max new tokens, the prediction as decoded; then each task's scoring rule.
 *
 *   const r = await runInfinitebench({ modelDir, dataDir: 'InfiniteBench/data', out: 'runs/ib-dense', backend, tasks: 'passkey' });
 */
import { EVAL_DEPARTURES } from '../departures.js';
import { infinitebenchDataPath, readInfinitebenchFile, type InfiniteBenchExample } from '../infinitebench/data.js';
import { buildInfinitebenchPrompt, infinitebenchGeneration, type InfiniteBenchPromptMode } from '../infinitebench/prompt.js';
import { infinitebenchRecord } from '../infinitebench/records.js';
import { parseInfinitebenchTasks, type InfiniteBenchTask } from '../infinitebench/tasks.js';
import { REFERENCE_MAX_PROMPT_TOKENS } from '../truncate.js';
import type { EvalTask } from './eval-run.js';
import { checkDataFiles, promptBudgets } from './inputs.js';
import { runBenchmark, type EvalRunOptions, type EvalRunResult } from './run-benchmark.js';
import { outputTimes, type EvalSession } from './session.js';
import { infinitebenchSummary, type InfiniteBenchSummary } from './summary.js';

export interface InfiniteBenchRunOptions extends EvalRunOptions {
  /** the folder of `<task>.jsonl` files */
  dataDir: string;
  /** a comma list, 'default' (the paper's 9) or 'all' (12) */
  tasks?: string;
  /** 'intended' (default) or 'reference-literal' (context only, as eval_commvq.py) */
  promptMode?: InfiniteBenchPromptMode;
  /** the truncation cap (default 127,500, lowered to fit the model's context) */
  maxPromptTokens?: number;
}

export async function runInfinitebench(o: InfiniteBenchRunOptions): Promise<EvalRunResult<InfiniteBenchSummary>> {
  const tasks = parseInfinitebenchTasks(o.tasks);
  const files = new Map(tasks.map((t) => [t.name, infinitebenchDataPath(o.dataDir, t.name)]));
  checkDataFiles(o.dataDir, [...files.values()], 'the InfiniteBench <task>.jsonl files (xinrongzhang2022/InfiniteBench)');
  const mode = o.promptMode ?? 'intended';
  const cap = o.maxPromptTokens ?? REFERENCE_MAX_PROMPT_TOKENS;
  return runBenchmark(o, {
    benchmark: 'infinitebench',
    dataDir: o.dataDir,
    summarize: infinitebenchSummary,
    prepare: (session) => {
      const budgets = promptBudgets(session.contextLength, tasks, cap, o.maxPromptTokens !== undefined);
      const departures = mode === 'intended' ? EVAL_DEPARTURES.infinitebench : EVAL_DEPARTURES.infinitebench.filter((d) => !d.startsWith('prompts use'));
      return {
        tasks: tasks.map((task) => infinitebenchTaskRun(session, task, files.get(task.name)!, budgets.get(task.name)!, mode)),
        protocol: { prompt_mode: mode, max_prompt_tokens: cap },
        settings: {
          tasks: tasks.map((t) => t.name),
          prompt_budget: Object.fromEntries(budgets),
          templates: Object.fromEntries(tasks.map((t) => [t.name, t.templateSource])),
          eos_token_ids: session.loaded.eosTokenIds,
        },
        departures,
      };
    },
  });
}

function infinitebenchTaskRun(session: EvalSession, task: InfiniteBenchTask, file: string, budget: number, mode: InfiniteBenchPromptMode): EvalTask<InfiniteBenchExample> {
  const generation = infinitebenchGeneration(task, session.loaded.eosTokenIds);
  return {
    name: task.name,
    examples: () => readInfinitebenchFile(file),
    predict: (example) => {
      // the ground truth first: an example whose answer cannot be read fails before any generation
      const base = infinitebenchRecord(task, example, '');
      const prompt = buildInfinitebenchPrompt(session.loaded.tokenizer, task, example, { maxPromptTokens: budget, mode });
      const out = session.generate(prompt.ids, generation);
      const record = { ...base, pred: out.text, prompt_tokens: prompt.ids.length, truncated: prompt.truncated, new_tokens: out.outputIds.length, stop: out.stopReason };
      return { record, promptTokens: prompt.ids.length, newTokens: out.outputIds.length, times: outputTimes(out) };
    },
  };
}
