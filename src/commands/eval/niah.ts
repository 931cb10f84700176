import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { runEvalCommand, type EvalCommandResult } from '../../cli/eval-command.js';
import { evalRunFlags } from '../../cli/eval-flags.js';
import { parseNiahDepths, parseNiahLengths } from '../../core/eval/niah/grid.js';
import { parseNiahScorer } from '../../core/eval/niah/score.js';
import { parseNiahTemplate } from '../../core/eval/niah/prompt.js';
import { seedFlag } from '../../cli/flags.js';
import { NIAH_DEFAULT_LENGTHS, runNiah, niahNeedles, type NiahSummary } from '../../core/eval/run/niah-run.js';
import { integerFlag } from '../../cli/number-flag.js';

export default class EvalNiah extends BaseCommand {
  static override summary = 'Needle in a haystack: recall of one sentence hidden at each depth of contexts of each length.';
  static override description =
    'The protocol of the reference NIAH harness with its bugs fixed (sentence ends from the model’s own tokenizer, no special ' +
    'tokens in the haystack, one BOS, a deterministic haystack), or your own prompt for base models (--template raw or a text ' +
    'with {context} and {question}), needles drawn per cell ({digits:N}, {words:N}, {key}; --seed) and RULER’s multi-key, ' +
    'multi-value and multi-query variants (--keys, --values, --queries; score with --scorer contains). Writes OUT/predictions/niah.jsonl (resumable), a JSON file per ' +
    'cell, OUT/summary.json, OUT/manifest.json and the depth × length heatmap OUT/niah.svg and OUT/niah.png (scores 0–10).';

  static override examples = [
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 1k..128k --out runs/niah-dense --device cuda',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 1k..128k --cache commvq:bits=1,run=runs/llama,prefill=strict,chunk=4096 --out runs/niah-1bit --device cuda',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 4k..32k:4k --depths 0,50,100 --haystack essays/ --out runs/niah --shard 0/2',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --lengths 1k..128k --cache dense,kivi:bits=2,fp8,commvq:bits=2,run=runs/llama,commvq:bits=1,run=runs/llama --out runs/niah-caches --device cuda   # one comparison',
    '<%= config.bin %> eval niah --model ./tiny-llama --lengths 200,400 --depths 3 --scorer exact --out /tmp/niah --json',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B --template raw --needle "The pass key is {digits:7}. Remember it." --question " What is the pass key? The pass key is" --scorer contains --lengths 1k..32k --out runs/passkey',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --keys 4 --values 2 --queries 2 --scorer contains --lengths 4k..32k --out runs/ruler-mk',
    '<%= config.bin %> eval niah --model ./Llama-3.1-8B-Instruct --random-weights --lengths 128k --depths 3 --cache commvq:bits=1,prefill=strict --out runs/niah-speed --device cuda',
  ];

  static override flags = {
    ...evalRunFlags,
    lengths: Flags.string({ description: `context lengths in tokens: a doubling range 1k..128k, a stepped range 4k..32k:4k, or a list (default ${NIAH_DEFAULT_LENGTHS}, up to the model's context)` }),
    depths: Flags.string({ description: 'needle depths: a count n (round(linspace(0, 100, n))) or a list of percents 0,50,100', default: '10' }),
    haystack: Flags.string({ description: 'folder of .txt files read in name order and repeated (default: generated filler text)' }),
    needle: Flags.string({ description: 'the needle sentence (default: the reference’s San Francisco sentence); {digits:N} or {words:N} draw a value per cell (seeded), {key} a key per needle' }),
    question: Flags.string({ description: 'the question asking for the needle ({key}: the keys asked)' }),
    scorer: Flags.string({ description: 'rouge1: ROUGE-1 F × 10 (the reference); exact: 10 if the needle is recalled word for word; contains: the share of the values in the answer × 10 (RULER)', default: 'rouge1' }),
    template: Flags.string({ description: 'the prompt: auto (chat if the model has a template, else plain), chat, plain, raw (BOS, haystack, question, no wrapper), or a text holding {context} and {question}', default: 'auto' }),
    seed: seedFlag('the varied needles'),
    keys: integerFlag({ description: 'RULER multi-key: needles of distinct keys (those not asked are distractors; default needle: RULER’s)', default: 1, min: 1 }),
    values: integerFlag({ description: 'RULER multi-value: needles (values) per key, all expected', default: 1, min: 1 }),
    queries: integerFlag({ description: 'RULER multi-query: keys asked, all their values expected', default: 1, min: 1 }),
    limit: integerFlag({ description: 'run only the first N cells (lengths outer, depths inner)', min: 1 }),
  };

  async run(): Promise<EvalCommandResult<NiahSummary>> {
    const { flags } = await this.parse(EvalNiah);
    // grid flags are checked before the model loads
    const grid = {
      lengths: flags.lengths === undefined ? undefined : parseNiahLengths(flags.lengths),
      depths: parseNiahDepths(flags.depths),
      scorer: parseNiahScorer(flags.scorer),
      template: parseNiahTemplate(flags.template),
    };
    const needles = { needle: flags.needle, question: flags.question, seed: flags.seed, keys: flags.keys, values: flags.values, queries: flags.queries };
    niahNeedles(needles); // a bad needle is refused before the run folder is made
    return runEvalCommand(this, 'niah cells', flags, (common) =>
      runNiah({
        ...common,
        ...grid,
        ...needles,
        haystack: flags.haystack === undefined ? undefined : { kind: 'folder', dir: flags.haystack },
        limit: flags.limit,
      }),
    );
  }
}
