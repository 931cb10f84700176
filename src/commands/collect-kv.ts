import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { allowNonFiniteFlag, deviceFlag, seedFlag } from '../cli/flags.js';
import { onInterrupt } from '../cli/interrupt.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { collectKv, type CollectKvOptions, type CollectKvSummary } from '../core/kv/collect-kv.js';
import { collectKvOnRanks } from '../core/kv/collect-kv-ranks.js';
import { distEnv } from '../core/parallel/dist-env.js';
import { Rendezvous } from '../core/parallel/rendezvous.js';
import { integerFlag } from '../cli/number-flag.js';
import { checkOutputDir } from '../core/options/path-option.js';

export default class CollectKv extends BaseCommand {
  static override summary = 'Run a model over a corpus and stream each layer\'s pre-RoPE keys and values to Arrow files.';
  static override description =
    'Packs the corpus into fixed-length windows as the reference does (BOS per document, the eos id between documents, ' +
    'a seeded shuffle, the last partial window dropped) and writes RUN_DIR/kv/{key,value}-LNNN.arrows (Arrow IPC streams, ' +
    'Float16, HF channel layout) plus RUN_DIR/manifest.json. Interrupted runs (Ctrl-C, a crash, a full disk) continue ' +
    'from the last complete window when the same command is run again. Under commvq launch each rank collects a ' +
    'contiguous share of the windows on its GPU and rank 0 merges the shares into the files one process writes.';

  static override examples = [
    '<%= config.bin %> collect-kv --model ./Llama-3.1-8B-Instruct --data fineweb-edu/000_00000.parquet --out runs/llama --device cuda',
    '<%= config.bin %> collect-kv --model ./tiny-llama --data corpus.jsonl.gz --out runs/tiny --tokens 65536 --seq-len 1024 --layers 0-1',
    '<%= config.bin %> launch --gpus 0-7 -- collect-kv --model ./Llama-3.1-8B-Instruct --data fineweb.parquet --out runs/llama --device cuda   # windows over 8 GPUs',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', required: true }),
    data: Flags.string({ description: 'corpus: JSON lines (.jsonl, .jsonl.gz), Parquet, Arrow IPC, or a folder of .txt files', required: true }),
    out: Flags.string({ description: 'run folder (RUN_DIR) to write', required: true }),
    tokens: integerFlag({ description: 'tokens to collect per layer (rounded up to whole windows)', default: 1 << 20, min: 1 }),
    'seq-len': integerFlag({ description: 'tokens per window', default: 8192, min: 1 }),
    layers: Flags.string({ description: 'layers to collect, e.g. 0-3,31 (default all)' }),
    field: Flags.string({ description: 'the text field of JSON/Parquet/Arrow records', default: 'text' }),
    seed: seedFlag('the packing shuffle'),
    'allow-nonfinite': allowNonFiniteFlag,
    device: deviceFlag,
  };

  async run(): Promise<CollectKvSummary | undefined> {
    const { flags } = await this.parse(CollectKv);
    checkOutputDir('out', flags.out);
    const env = distEnv(); // under commvq launch: each rank collects its share of the windows, rank 0 merges and reports
    const lead = env.rank === 0;
    const interrupt = onInterrupt();
    const bar = progressBar('collecting windows', this.jsonEnabled() || !lead);
    const collect = async (o: CollectKvOptions): Promise<CollectKvSummary> => {
      if (env.worldSize === 1) return collectKv(o);
      const rdzv = await Rendezvous.join(env); // rank 0 joins holding the run lock: no rank writes before it has it
      try {
        return await collectKvOnRanks(o, rdzv);
      } finally {
        rdzv.close();
      }
    };
    const locked = <T>(fn: () => Promise<T>): Promise<T> => (lead ? this.withRunLock(flags.out, fn) : fn());
    try {
      const summary = await locked(async () => collect({
        modelDir: flags.model,
        corpus: flags.data,
        runDir: flags.out,
        backend: await createBackend(flags.device),
        tokens: flags.tokens,
        seqLen: flags['seq-len'],
        layers: flags.layers,
        field: flags.field,
        seed: flags.seed,
        allowNonFinite: flags['allow-nonfinite'],
        signal: interrupt.signal,
        onProgress: (p) => bar.update(p.windowsDone, p.windows, `| ${Math.round(p.tokensPerSecond)} tokens/s`),
      }));
      bar.stop();
      if (!summary.complete) process.exitCode = 130;
      if (!lead) return undefined; // rank 0 reports the whole job
      if (!summary.complete) {
        this.logToStderr(`stopped after ${summary.windowsDone}/${summary.windows} windows; run the same command again to continue`);
      } else {
        const resumed = summary.resumedFrom > 0 ? ` (resumed after ${summary.resumedFrom})` : '';
        const short = summary.shortOfBudget ? ' — the corpus ran out before the token budget' : '';
        this.log(`${summary.windowsDone} windows${resumed}, ${summary.tokensPerLayer} tokens per layer, ${summary.layers.length} layers → ${summary.runDir}/kv${short}`);
      }
      return summary;
    } finally {
      bar.stop();
      interrupt.dispose();
    }
  }
}
