import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { parseCacheList } from '../../cli/cache-flag.js';
import { allowNonFiniteFlag, deviceFlag, dtypeFlag, randomWeightsFlag } from '../../cli/flags.js';
import { onInterrupt } from '../../cli/interrupt.js';
import { integerFlag } from '../../cli/number-flag.js';
import { parseContextList } from '../../cli/list-flags.js';
import { OptionError } from '../../core/errors.js';
import { progressBar } from '../../cli/progress.js';
import { createBackend } from '../../core/backend/create-backend.js';
import { progressDetail } from '../../core/eval/run/report.js';
import { perplexityTable, runPerplexity, type PerplexityRunResult } from '../../core/eval/run/perplexity-run.js';
import { checkOutputDir } from '../../core/options/path-option.js';
import type { DType } from '../../core/tensor/dtype.js';

export default class EvalPerplexity extends BaseCommand {
  static override summary = 'Perplexity of a corpus through one or more caches, every position attending as in decoding.';
  static override description =
    'Our protocol (no published harness to match): the corpus’s documents tokenized (BOS each) and concatenated, windows of ' +
    '--context tokens every --stride tokens (Hugging Face’s sliding-window recipe: each window scores the targets no earlier ' +
    'window scored), each on a fresh cache where every token attends as in decoding — compressed blocks before its own, its ' +
    'own block exact (CommVQ runs prefill=strict; KIVI/int/fp8 run one decode step per token). Prints one table; writes ' +
    'OUT/windows/<cache>.jsonl (resumable), OUT/summary.json and OUT/manifest.json.';

  static override examples = [
    '<%= config.bin %> eval perplexity --model ./Llama-3.1-8B-Instruct --data fineweb-edu/000_00000.parquet --max-tokens 1000000 --context 8192 --cache dense,commvq:bits=2,run=runs/llama,commvq:bits=1,run=runs/llama --out runs/ppl --device cuda',
    '<%= config.bin %> eval perplexity --model ./Llama-3.1-8B-Instruct --data corpus.jsonl --field content --context 32k --stride 16k --cache dense,kivi:bits=2 --out runs/ppl-kivi --device cpu',
    '<%= config.bin %> eval perplexity --model ./tiny-llama --data essays/ --context 512 --out /tmp/ppl --json',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', required: true }),
    'random-weights': randomWeightsFlag,
    'allow-nonfinite': allowNonFiniteFlag,
    data: Flags.string({ description: 'corpus: JSON lines, Parquet, Arrow, a folder of .txt files, or one .txt file', required: true }),
    field: Flags.string({ description: 'the text field of JSON/Parquet/Arrow records', default: 'text' }),
    context: Flags.string({ description: 'tokens per window, e.g. 8192 or 8k (k = 1024; at most the model’s context)', required: true }),
    stride: Flags.string({ description: 'tokens between window starts, e.g. 4k (default: the context, disjoint windows)' }),
    'max-tokens': integerFlag({ description: 'score only the corpus’s first N tokens', min: 2 }),
    cache: Flags.string({ description: 'caches to score, a comma list of the --cache grammar (e.g. dense,commvq:bits=1,run=RUN); CommVQ runs prefill=strict', default: 'dense' }),
    out: Flags.string({ description: 'run folder to write (a rerun continues it)', required: true }),
    device: deviceFlag,
    dtype: dtypeFlag,
  };

  async run(): Promise<PerplexityRunResult> {
    const { flags } = await this.parse(EvalPerplexity);
    checkOutputDir('out', flags.out);
    const caches = parseCacheList(flags.cache);
    const interrupt = onInterrupt();
    const bar = progressBar('perplexity windows', this.jsonEnabled());
    try {
      const result = await this.withRunLock(flags.out, async () => runPerplexity({
        modelDir: flags.model,
        out: flags.out,
        backend: await createBackend(flags.device),
        data: flags.data,
        field: flags.field,
        context: oneCount(flags.context, 'context'),
        stride: flags.stride === undefined ? undefined : oneCount(flags.stride, 'stride'),
        maxTokens: flags['max-tokens'],
        caches,
        dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
        randomWeights: flags['random-weights'],
        allowNonFinite: flags['allow-nonfinite'],
        signal: interrupt.signal,
        onProgress: (p) => bar.update(p.done, p.total, progressDetail(p)),
      }));
      bar.stop();
      for (const line of perplexityTable(result.summary)) this.log(line);
      this.log(`→ ${result.summaryPath}`);
      if (result.summary.random_weights) this.log('random weights: the perplexities are noise (for timing only)');
      if (result.outcome === 'interrupted') {
        this.log('interrupted: run the same command again to continue');
        process.exitCode = 130;
      }
      return result;
    } finally {
      bar.stop();
      interrupt.dispose();
    }
  }
}

/** One token count of the context-list grammar (8192, 8k). */
function oneCount(text: string, option: string): number {
  const counts = parseContextList(text, option);
  if (counts.length !== 1) throw new OptionError(option, text, 'one token count, not a list');
  return counts[0]!;
}
