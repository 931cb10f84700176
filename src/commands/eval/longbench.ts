import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { runEvalCommand, type EvalCommandResult } from '../../cli/eval-command.js';
import { evalRunFlags, exampleLimitFlag, maxPromptTokensFlag } from '../../cli/eval-flags.js';
import type { LongBenchChatMode } from '../../core/eval/longbench/prompt.js';
import { runLongbench } from '../../core/eval/run/longbench-run.js';
import type { LongBenchSummary } from '../../core/eval/run/summary.js';

export default class EvalLongbench extends BaseCommand {
  static override summary = 'LongBench: the paper’s 8 tasks (or any of the 21) with the reference prompts, truncation and metrics.';
  static override description =
    'Reads the official JSON-lines files DATA/<task>.jsonl (DATA/<task>_e.jsonl with --e), truncates prompts in the middle at ' +
    '127,500 tokens or what the model’s context leaves, decodes greedily with each task’s max new tokens (samsum stops at a ' +
    'newline) and scores as LongBench’s eval.py. Writes OUT/predictions/<task>.jsonl (resumable), OUT/summary.json and OUT/manifest.json.';

  static override examples = [
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --out runs/lb-dense --device cuda',
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --cache commvq:bits=2,run=runs/llama --out runs/lb-2bit --device cuda',
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --tasks qasper,samsum --shard 1/4 --device cuda:1 --out runs/lb',
    '<%= config.bin %> eval longbench --model ./Llama-3.1-8B-Instruct --data LongBench/data --cache dense,kivi:bits=2,int4,commvq:bits=2,run=runs/llama --out runs/lb-caches --device cuda',
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

  async run(): Promise<EvalCommandResult<LongBenchSummary>> {
    const { flags } = await this.parse(EvalLongbench);
    return runEvalCommand(this, 'longbench', flags, (common) =>
      runLongbench({
        ...common,
        dataDir: flags.data,
        tasks: flags.tasks,
        e: flags.e,
        chat: flags.chat as LongBenchChatMode,
        maxPromptTokens: flags['max-prompt-tokens'],
        limit: flags.limit,
      }),
    );
  }
}
