import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { runEvalCommand, type EvalCommandResult } from '../../cli/eval-command.js';
import { evalRunFlags, exampleLimitFlag } from '../../cli/eval-flags.js';
import { integerFlag } from '../../cli/number-flag.js';
import { GSM8K_TEMPLATES, type Gsm8kTemplate } from '../../core/eval/gsm8k/prompt.js';
import { runGsm8k, type Gsm8kSummary } from '../../core/eval/run/gsm8k-run.js';

export default class EvalGsm8k extends BaseCommand {
  static override summary = 'GSM8K under our own protocol: 8-shot chain of thought, greedy, final-number exact match.';
  static override description =
    'Not a published harness (the CommVQ reference has none for GSM8K): compare caches with it, not with other papers’ ' +
    'tables. The 8 CoT exemplars of Wei et al. (2022) as "Q: …\\nA: …" (fewshot, base models: greedy up to 256 tokens, ' +
    'to EOS or a blank line) or as chat turns (chat, instruct models: up to 512 tokens, to the end of the turn); the final number from "#### N", "The ' +
    'answer is N" or else the last number, commas, $ and units stripped; exact match by value. Writes ' +
    'OUT/predictions/gsm8k.jsonl (resumable), OUT/summary.json and OUT/manifest.json.';

  static override examples = [
    '<%= config.bin %> eval gsm8k --model ./Llama-3.1-8B --data gsm8k/test.jsonl --out runs/gsm8k-dense --device cuda',
    '<%= config.bin %> eval gsm8k --model ./Llama-3.1-8B-Instruct --data main/test-00000-of-00001.parquet --template chat --cache commvq:bits=1,run=runs/llama,prefill=strict --out runs/gsm8k-1bit --device cuda',
    '<%= config.bin %> eval gsm8k --model ./Llama-3.1-8B --data gsm8k/test.jsonl --shard 0/4 --device cuda:0 --out runs/gsm8k',
    '<%= config.bin %> eval gsm8k --model ./tiny-llama --data test.jsonl --limit 3 --max-new-tokens 32 --out /tmp/gsm8k --json',
  ];

  static override flags = {
    ...evalRunFlags,
    data: Flags.string({ description: 'GSM8K test set: test.jsonl or a Parquet file of question/answer records (openai/gsm8k)', required: true }),
    template: Flags.string({ description: 'fewshot: 8-shot CoT text (base models); chat: the exemplars as chat turns (instruct models)', options: [...GSM8K_TEMPLATES], default: 'fewshot' }),
    shots: integerFlag({ description: 'CoT exemplars before each question', default: 8, min: 0, max: 8 }),
    'max-new-tokens': integerFlag({ description: 'the longest answer (default 256 for fewshot, 512 for chat)', min: 1 }),
    limit: exampleLimitFlag,
  };

  async run(): Promise<EvalCommandResult<Gsm8kSummary>> {
    const { flags } = await this.parse(EvalGsm8k);
    return runEvalCommand(this, 'gsm8k', flags, (common) =>
      runGsm8k({ ...common, data: flags.data, template: flags.template as Gsm8kTemplate, shots: flags.shots, maxNewTokens: flags['max-new-tokens'], limit: flags.limit }),
    );
  }
}
