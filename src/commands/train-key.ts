import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { bitsFlag, deviceFlag, seedFlag } from '../cli/flags.js';
import { parseBitsList } from '../cli/list-flags.js';
import { onInterrupt } from '../cli/interrupt.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { distEnv } from '../core/parallel/dist-env.js';
import { openCollective } from '../core/parallel/open-collective.js';
import { RESIDUALS_FOR_BITS } from '../core/commvq/geometry.js';
import { trainKeyWidths, type KeyWidth } from '../core/keys/nested-codebook.js';
import { formatKeyReport, type KeyReport } from '../core/keys/report.js';
import { OptionError } from '../core/errors.js';
import { parseNumberOption } from '../core/options/number-option.js';
import { integerFlag } from '../cli/number-flag.js';

export default class TrainKey extends BaseCommand {
  static override summary = 'Train the RoPE-commutative key codebook of every layer (EM, or EM refined end to end).';
  static override description =
    'Reads the pre-RoPE keys collect-kv wrote to RUN_DIR/kv, trains θ [R, kv_heads, 128, head_dim/2] per layer by the ' +
    "reference's annealed EM (spec §3; --device cuda runs it on the GPU) and, with --method e2e, refines all R stages " +
    'jointly by gradient descent on the inference encoder (CPU). Writes RUN_DIR/key-codebook-{method}-{bits}bit.arrow and ' +
    'a report of the held-out relative error ‖k − k̂‖²/‖k‖² after every stage, per layer and head.';

  static override examples = [
    '<%= config.bin %> train-key runs/llama --method em --bits 1 --device cuda',
    '<%= config.bin %> train-key runs/llama --method e2e --bits 2 --layers 0-3 --tokens 262144',
    '<%= config.bin %> train-key runs/tiny --method em --bits 1 --residuals 4 --em-steps 20 --device cpu --json',
    '<%= config.bin %> train-key runs/llama --bits 1,2 --device cuda   # one EM run, both codebooks',
    '<%= config.bin %> launch --gpus 0-7 -- train-key runs/llama --bits 1 --device cuda   # layers over 8 GPUs',
  ];

  static override args = { runDir: Args.string({ description: 'run folder written by collect-kv', required: true }) };

  static override flags = {
    method: Flags.string({ description: 'em: the reference EM; e2e: EM, then all stages refined jointly', options: ['em', 'e2e'], default: 'em' }),
    bits: bitsFlag({ description: 'key bits per channel, R = 11 for 1 and 21 for 2 (1,2: EM trains R = 21 once; the 1-bit codebook is its first 11 stages)', default: '1' }),
    residuals: Flags.string({ description: 'R, residual stages (overrides the one --bits implies): one number per --bits width, e.g. 4,8' }),
    layers: Flags.string({ description: 'layers to train, e.g. 0-3,31 (default: every collected layer)' }),
    tokens: integerFlag({ description: 'training tokens per layer', default: 1 << 20, min: 1 }),
    heldout: integerFlag({ description: 'held-out tokens per layer for the report (at most an eighth of those collected)', default: 16384, min: 1 }),
    seed: seedFlag('the EM init draws and the E2E shuffles'),
    'em-steps': integerFlag({ description: 'most EM iterations per stage (the reference: 100)', default: 100, min: 1 }),
    epochs: integerFlag({ description: 'E2E epochs', default: 6, min: 1 }),
    resume: Flags.boolean({ description: 'keep the layers an interrupted run with the same settings finished, and train the rest', default: false }),
    device: deviceFlag,
  };

  async run(): Promise<KeyReport | KeyReport[] | undefined> {
    const { args, flags } = await this.parse(TrainKey);
    const widths = parseWidths(flags.bits, flags.residuals);
    const backend = await createBackend(flags.device);
    const env = distEnv(); // under commvq launch: each rank trains its share of the layers, rank 0 gathers and writes
    const lead = env.rank === 0;
    const collective = await openCollective(env, backend);
    const bar = progressBar('training key codebooks', this.jsonEnabled() || !lead);
    const interrupt = onInterrupt(); // Ctrl-C: stop at the next EM step, keeping the finished layers
    try {
      const locked = <T>(fn: () => Promise<T>): Promise<T> => (lead ? this.withRunLock(args.runDir, fn) : fn());
      const results = await locked(() => trainKeyWidths({
        runDir: args.runDir,
        method: flags.method as 'em' | 'e2e',
        widths,
        layers: flags.layers,
        tokens: flags.tokens,
        heldout: flags.heldout,
        seed: flags.seed,
        backend,
        em: { maxSteps: flags['em-steps'] },
        e2e: { epochs: flags.epochs },
        onProgress: (done, total) => bar.update(done, total),
        signal: interrupt.signal,
        resume: flags.resume,
        collective,
      }));
      bar.stop();
      if (!lead) return undefined; // rank 0 reports the whole job
      if (results.some((r) => !r.complete)) {
        this.logToStderr(`stopped after ${results[0]!.report.layers.length} finished layer(s); rerun with --resume to continue`);
        process.exitCode = 130; // so \`train-key … && train-value …\` does not carry on
      }
      for (const r of results) {
        this.log(formatKeyReport(r.report));
        this.log(`→ ${r.codebook}\n→ ${r.reportPath}`);
      }
      return results.length === 1 ? results[0]!.report : results.map((r) => r.report);
    } finally {
      bar.stop();
      interrupt.dispose();
      collective.dispose();
    }
  }
}

/** --bits with --residuals as one R per width (default 11 and 21). */
function parseWidths(bits: string, residuals: string | undefined): KeyWidth[] {
  const list = parseBitsList(bits);
  const rs = residuals?.split(',').map((r) => parseNumberOption('residuals', r.trim(), { integer: true, min: 1 }));
  if (rs && rs.length !== list.length) throw new OptionError('residuals', residuals, `expected ${list.length} positive integer(s), one per --bits width`);
  return list.map((b, i) => ({ bits: b, residuals: rs?.[i] ?? RESIDUALS_FOR_BITS[b] }));
}
