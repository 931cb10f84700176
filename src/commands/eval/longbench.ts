import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { evalRunFlags, exampleLimitFlag, maxPromptTokensFlag } from '../../cli/eval-flags.js';
import { onInterrupt } from '../../cli/interrupt.js';
import { progressBar } from '../../cli/progress.js';
import { createBackend } from '../../core/backend/create-backend.js';
import type { LongBenchChatMode } from '../../core/eval/longbench/prompt.js';
import { parseCacheChoice } from '../../core/eval/run/cache-choice.js';
import { runLongbench } from '../../core/eval/run/longbench-run.js';
import { progressDetail, runReport } from '../../core/eval/run/report.js';
import type { EvalRunResult } from '../../core/eval/run/run-benchmark.js';
import type { LongBenchSummary } from '../../core/eval/run/summary.js';
import { parseShard } from '../../core/eval/shard.js';
import type { DType } from '../../core/tensor/dtype.js';

export default class EvalLongbench extends BaseCommand {
  static override summary = 'LongBench: the paper’s 8 tasks (or any of the 21) with the reference prompts, truncation and metrics.';
  static override description =
    'Reads the official JSON-lines files DATA/<task>.jsonl (DATA/<task>_e.jsonl with --e), truncates prompts in the middle at ' +
    '127,500 tokens or what the model’s context leaves, decodes greedily with each task’s max new tokens (samsum stops at a ' +
    'newline) and scores as LongBench’s eval.py. Writes OUT/predictions/<task>.jsonl (resumable), OUT/summary.json and OUT/manifest.json.';

  static override examples = [
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --out runs/lb-dense --device cuda',
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --tasks qasper,samsum --shard 1/4 --device cuda:1 --out runs/lb',
    '<%= config.bin %> eval longbench --model ./tiny-llama --data data/ --tasks trec --limit 5 --out /tmp/lb --json',
  ];

  static override flags = {
    ...evalRunFlags,
    data: Flags.string({ description: 'folder of the official LongBench <task>.jsonl files', required: true }),
    tasks: Flags.string({ description: 'comma list of tasks, default (the paper’s 8) or all (21)', default: 'default' }),
    e: Flags.boolean({ description: 'LongBench-E: the <task>_e.jsonl files, scores per length bucket' }),
    chat: Flags.string({ description: 'none: the raw prompt (the reference); template: the model’s chat template where LongBench allows', options: ['none', 'template'], default: 'none' }),
    'max-prompt-tokens': maxPromptTokensFlag,
    limit: exampleLimitFlag,
  };

  async run(): Promise<EvalRunResult<LongBenchSummary>> {
    const { flags } = await this.parse(EvalLongbench);
    const cache = parseCacheChoice(flags.cache);
    const shard = parseShard(flags.shard);
    const interrupt = onInterrupt();
    const bar = progressBar('longbench', this.jsonEnabled());
    try {
      const result = await runLongbench({
        modelDir: flags.model,
        dataDir: flags.data,
        out: flags.out,
        tasks: flags.tasks,
        e: flags.e,
        chat: flags.chat as LongBenchChatMode,
        maxPromptTokens: flags['max-prompt-tokens'],
        cache,
        shard,
        limit: flags.limit,
        backend: await createBackend(flags.device),
        dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
        signal: interrupt.signal,
        onProgress: (p) => bar.update(p.done, p.total, progressDetail(p)),
      });
      bar.stop();
      for (const line of runReport(result)) this.log(line);
      if (result.outcome === 'interrupted') process.exitCode = 130;
      return result;
    } finally {
      bar.stop();
      interrupt.dispose();
    }
  }
}
