import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { runEvalCommand, type EvalCommandResult } from '../../cli/eval-command.js';
import { evalRunFlags } from '../../cli/eval-flags.js';
import { parseNiahDepths, parseNiahLengths } from '../../core/eval/niah/grid.js';
import { parseNiahScorer } from '../../core/eval/niah/score.js';
import { NIAH_DEFAULT_LENGTHS, runNiah, type NiahSummary } from '../../core/eval/run/niah-run.js';
import { integerFlag } from '../../cli/number-flag.js';

export default class EvalNiah extends BaseCommand {
  static override summary = 'Needle in a haystack: recall of one sentence hidden at each depth of contexts of each length.';
  static override description =
    'The protocol of the reference NIAH harness with its bugs fixed (sentence ends from the model’s own tokenizer, no special ' +
    'tokens in the haystack, one BOS, a deterministic haystack). Writes OUT/predictions/niah.jsonl (resumable), a JSON file per ' +
    'cell, OUT/summary.json, OUT/manifest.json and the depth × length heatmap OUT/niah.svg and OUT/niah.png (scores 0–10).';

  static override examples = [
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 1k..128k --out runs/niah-dense --device cuda',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 1k..128k --cache commvq:bits=1,run=runs/llama,prefill=strict,chunk=4096 --out runs/niah-1bit --device cuda',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 4k..32k:4k --depths 0,50,100 --haystack essays/ --out runs/niah --shard 0/2',
    '<%= config.bin %> eval niah --model ./tiny-llama --lengths 200,400 --depths 3 --scorer exact --out /tmp/niah --json',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --random-weights --lengths 128k --depths 3 --cache commvq:bits=1,prefill=strict --out runs/niah-speed --device cuda',
  ];

  static override flags = {
    ...evalRunFlags,
    lengths: Flags.string({ description: `context lengths in tokens: a doubling range 1k..128k, a stepped range 4k..32k:4k, or a list (default ${NIAH_DEFAULT_LENGTHS}, up to the model's context)` }),
    depths: Flags.string({ description: 'needle depths: a count n (round(linspace(0, 100, n))) or a list of percents 0,50,100', default: '10' }),
    haystack: Flags.string({ description: 'folder of .txt files read in name order and repeated (default: generated filler text)' }),
    needle: Flags.string({ description: 'the needle sentence (default: the reference’s San Francisco sentence)' }),
    question: Flags.string({ description: 'the question asking for the needle' }),
    scorer: Flags.string({ description: 'rouge1: ROUGE-1 F × 10 (the reference); exact: 10 if the needle is recalled word for word', default: 'rouge1' }),
    limit: integerFlag({ description: 'run only the first N cells (lengths outer, depths inner)', min: 1 }),
  };

  async run(): Promise<EvalCommandResult<NiahSummary>> {
    const { flags } = await this.parse(EvalNiah);
    // grid flags are checked before the model loads
    const grid = {
      lengths: flags.lengths === undefined ? undefined : parseNiahLengths(flags.lengths),
      depths: parseNiahDepths(flags.depths),
      scorer: parseNiahScorer(flags.scorer),
    };
    return runEvalCommand(this, 'niah cells', flags, (common) =>
      runNiah({
        ...common,
        ...grid,
        haystack: flags.haystack === undefined ? undefined : { kind: 'folder', dir: flags.haystack },
        needle: flags.needle,
        question: flags.question,
        limit: flags.limit,
      }),
    );
  }
}
