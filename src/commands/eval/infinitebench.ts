import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { runEvalCommand, type EvalCommandResult } from '../../cli/eval-command.js';
import { evalRunFlags, exampleLimitFlag, maxPromptTokensFlag } from '../../cli/eval-flags.js';
import type { InfiniteBenchPromptMode } from '../../core/eval/infinitebench/prompt.js';
import { runInfinitebench } from '../../core/eval/run/infinitebench-run.js';
import type { InfiniteBenchSummary } from '../../core/eval/run/summary.js';

export default class EvalInfinitebench extends BaseCommand {
  static override summary = 'InfiniteBench: the paper’s 9 tasks (or any of the 12) with the intended llama templates and each task’s scoring rule.';
  static override description =
    'Reads DATA/<task>.jsonl (xinrongzhang2022/InfiniteBench), builds the intended llama prompt (the reference code dropped the ' +
    'question: --prompt-mode reference-literal reproduces that), truncates in the middle at 127,500 tokens or what the model’s ' +
    'context leaves, decodes greedily and scores as compute_scores.py. Writes OUT/predictions/<task>.jsonl (resumable), ' +
    'OUT/summary.json and OUT/manifest.json.';

  static override examples = [
    '<%= config.bin %> eval infinitebench --model ./Llama-3.1-8B-Instruct --data InfiniteBench/data --out runs/ib-dense --device cuda',
    '<%= config.bin %> eval infinitebench --model ./Llama-3.1-8B-Instruct --data InfiniteBench/data --cache commvq:bits=1,run=runs/llama,prefill=strict,chunk=4096 --out runs/ib-1bit --device cuda',
    '<%= config.bin %> eval infinitebench --model ./Llama-3.1-8B-Instruct --data InfiniteBench/data --tasks passkey,kv_retrieval --shard 0/8 --device cuda:0 --out runs/ib',
  ];

  static override flags = {
    ...evalRunFlags,
    data: Flags.string({ description: 'folder of the InfiniteBench <task>.jsonl files', required: true }),
    tasks: Flags.string({ description: 'comma list of tasks, default (the paper’s 9) or all (12)', default: 'default' }),
    'prompt-mode': Flags.string({ description: 'intended: the llama templates; reference-literal: the context only, as eval_commvq.py', options: ['intended', 'reference-literal'], default: 'intended' }),
    'max-prompt-tokens': maxPromptTokensFlag,
    limit: exampleLimitFlag,
  };

  async run(): Promise<EvalCommandResult<InfiniteBenchSummary>> {
    const { flags } = await this.parse(EvalInfinitebench);
    return runEvalCommand(this, 'infinitebench', flags, (common) =>
      runInfinitebench({
        ...common,
        dataDir: flags.data,
        tasks: flags.tasks,
        promptMode: flags['prompt-mode'] as InfiniteBenchPromptMode,
        maxPromptTokens: flags['max-prompt-tokens'],
        limit: flags.limit,
      }),
    );
  }
}
