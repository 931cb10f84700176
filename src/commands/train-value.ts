import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { allowNonFiniteFlag, bitsFlag, deviceFlag, seedFlag } from '../cli/flags.js';
import { parseBitsList } from '../cli/list-flags.js';
import { onInterrupt } from '../cli/interrupt.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { distEnv } from '../core/parallel/dist-env.js';
import { openCollective } from '../core/parallel/open-collective.js';
import { LR_RULE, trainValue, type TrainValueResult } from '../core/values/train-value.js';
import { integerFlag, numberFlag } from '../cli/number-flag.js';

export default class TrainValue extends BaseCommand {
  static override summary = 'Train the value encoders and codebooks with the frozen model in the loop (spec §5).';
  static override description =
    'Per layer: LayerNorm → Linear → GELU → Linear → a 4-way Gumbel choice per 2 bits, decoded by one matrix product ' +
    'with a codebook and scaled by make-scale\'s statistic. Loss = value MSE/2 + attention-output MSE (layer-local ' +
    'teacher forcing), AdamW (0.9, 0.95, wd 0.1), clip 1.0, log warm-up then cosine (1-bit default) or constant ' +
    '(2-bit default). Checkpoints atomically; --resume continues bit for bit. Writes RUN_DIR/value-codebook-Nbit.arrow, ' +
    'a loss plot and a report comparing held-out value error with the untrained compressor and a plain quantizer.';

  static override examples = [
    '<%= config.bin %> train-value runs/llama --model ./Llama-3.1-8B-Instruct --data fineweb.parquet --bits 1 --steps 100000 --device cuda',
    '<%= config.bin %> train-value runs/tiny --model ./tiny-llama --data corpus.jsonl --bits 2 --steps 50 --seq-len 256 --resume',
    '<%= config.bin %> train-value runs/tiny --model ./tiny-llama --data corpus.jsonl --bits 1,2 --steps 50   # one width after the other',
    '<%= config.bin %> launch --gpus 0-7 -- train-value runs/llama --model ./Llama-3.1-8B-Instruct --data fineweb.parquet --bits 1 --steps 100000 --device cuda   # 8 windows a step, one per GPU',
  ];

  static override args = { runDir: Args.string({ description: 'run folder with collect-kv and make-scale outputs', required: true }) };

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder (the one RUN_DIR was collected from)', required: true }),
    data: Flags.string({ description: 'corpus (as for collect-kv)', required: true }),
    bits: bitsFlag({ description: 'bits per value, N_c = D·bits (1,2 trains each width in turn)', required: true }),
    steps: integerFlag({ description: 'training steps (one window each)', default: 1000, min: 1 }),
    'seq-len': integerFlag({ description: 'tokens per window', default: 8192, min: 1 }),
    lr: numberFlag({ description: 'peak learning rate (above 0, at most 1)', default: 1e-3, ...LR_RULE }),
    schedule: Flags.string({ description: 'after the log warm-up: cosine (1-bit default) or constant (2-bit default)', options: ['cosine', 'constant'] }),
    warmup: integerFlag({ description: 'log warm-up steps (default 100 for 1-bit, 10000 for 2-bit)', min: 1 }),
    seed: seedFlag('initialisation, data order and Gumbel noise'),
    layers: Flags.string({ description: 'layers to train, e.g. 0-3 (default: every layer make-scale covers)' }),
    field: Flags.string({ description: 'the text field of the corpus records', default: 'text' }),
    'checkpoint-every': integerFlag({ description: 'steps between checkpoints', default: 100, min: 1 }),
    'eval-windows': integerFlag({ description: 'held-out windows for the final evaluation', default: 2, min: 0 }),
    batch: integerFlag({ description: 'windows per step over all GPUs of a launch (default: the number of GPUs; --resume keeps the checkpoint\'s)', min: 1 }),
    resume: Flags.boolean({ description: 'continue from RUN_DIR/value-train/checkpoint-Nbit.safetensors' }),
    'allow-nonfinite': allowNonFiniteFlag,
    device: deviceFlag,
  };

  async run(): Promise<TrainValueOutput | TrainValueOutput[] | undefined> {
    const { args, flags } = await this.parse(TrainValue);
    const widths = parseBitsList(flags.bits);
    const backend = await createBackend(flags.device);
    const env = distEnv(); // under commvq launch: this rank's place; alone: rank 0 of 1
    const lead = env.rank === 0; // the rank that locks the folder, writes and prints
    const lock = lead ? this.runLock(args.runDir) : undefined;
    const collective = await openCollective(env, backend).catch((e: unknown) => (lock?.release(), Promise.reject(e)));
    const interrupt = onInterrupt();
    const outputs: TrainValueOutput[] = [];
    try {
      for (const bits of widths) {
        const bar = progressBar(`training ${bits}-bit`, this.jsonEnabled() || !lead);
        const started = performance.now();
        const result = await trainValue({
          runDir: args.runDir, modelDir: flags.model, corpus: flags.data, backend, bits, steps: flags.steps, seqLen: flags['seq-len'],
          lr: flags.lr, schedule: flags.schedule as 'cosine' | 'constant' | undefined, warmup: flags.warmup, seed: flags.seed,
          layers: flags.layers, field: flags.field, checkpointEvery: flags['checkpoint-every'], evalWindows: flags['eval-windows'],
          resume: flags.resume, allowNonFinite: flags['allow-nonfinite'], signal: interrupt.signal, collective, batch: flags.batch,
          onStep: (s, total) => {
            const tps = (s.step * (flags.batch ?? env.worldSize) * flags['seq-len']) / ((performance.now() - started) / 1000); // all ranks' tokens (a resumed run's own batch aside)
            bar.update(s.step, total, `| loss ${s.loss.toExponential(3)} (value ${s.valueMse.toExponential(2)}, attn ${s.attentionMse.toExponential(2)}) | ${Math.round(tps)} tokens/s`);
          },
        }).finally(() => bar.stop());
        const { history, ...rest } = result;
        outputs.push({ ...rest, final: history[history.length - 1] });
        if (lead) for (const line of resultLines(result, bits)) this.log(line);
        if (!result.complete) {
          if (lead) this.logToStderr(`stopped at step ${result.stepsDone} of ${bits}-bit; rerun with --resume to continue`);
          process.exitCode = 130;
          break;
        }
      }
      if (!lead) return undefined; // under launch, --json prints rank 0's result alone
      return outputs.length === 1 ? outputs[0]! : outputs;
    } finally {
      interrupt.dispose();
      collective.dispose();
      lock?.release();
    }
  }
}

type TrainValueOutput = Omit<TrainValueResult, 'history'> & { final?: unknown };

function resultLines(result: TrainValueResult, bits: number): string[] {
  return [
    ...(result.evaluation ?? []).map((e) => `layer ${e.layer}: held-out relative value error ${e.trained.toExponential(3)} (untrained ${e.untrained.toExponential(3)}, ${bits}-bit asymmetric quantizer ${e.asymmetric.toExponential(3)})`),
    `→ ${result.codebook}\n  loss plot ${result.lossPlot}, report ${result.report}`,
  ];
}
