import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { deviceFlag } from '../cli/flags.js';
import { onInterrupt } from '../cli/interrupt.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import type { KeyReport } from '../core/keys/report.js';
import { trainKey } from '../core/keys/train-key.js';

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
  ];

  static override args = { runDir: Args.string({ description: 'run folder written by collect-kv', required: true }) };

  static override flags = {
    method: Flags.string({ description: 'em: the reference EM; e2e: EM, then all stages refined jointly', options: ['em', 'e2e'], default: 'em' }),
    bits: Flags.string({ description: 'key bits per channel: 1 (R = 11) or 2 (R = 21)', options: ['1', '2'], default: '1' }),
    residuals: Flags.integer({ description: 'R, residual stages (overrides the one --bits implies)', min: 1 }),
    layers: Flags.string({ description: 'layers to train, e.g. 0-3,31 (default: every collected layer)' }),
    tokens: Flags.integer({ description: 'training tokens per layer', default: 1 << 20, min: 1 }),
    heldout: Flags.integer({ description: 'held-out tokens per layer for the report (at most an eighth of those collected)', default: 16384, min: 1 }),
    seed: Flags.integer({ description: 'seed of the EM init draws and the E2E shuffles', default: 0 }),
    'em-steps': Flags.integer({ description: 'most EM iterations per stage (the reference: 100)', default: 100, min: 1 }),
    epochs: Flags.integer({ description: 'E2E epochs', default: 6, min: 1 }),
    resume: Flags.boolean({ description: 'keep the layers an interrupted run with the same settings finished, and train the rest', default: false }),
    device: deviceFlag,
  };

  async run(): Promise<KeyReport> {
    const { args, flags } = await this.parse(TrainKey);
    const backend = await createBackend(flags.device);
    const bar = progressBar('training key codebooks', this.jsonEnabled());
    const interrupt = onInterrupt(); // Ctrl-C: stop after the layer in progress, keeping the finished ones
    try {
      const result = await trainKey({
        runDir: args.runDir,
        method: flags.method as 'em' | 'e2e',
        bits: Number(flags.bits) as 1 | 2,
        residuals: flags.residuals,
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
      });
      bar.stop();
      if (!result.complete) this.logToStderr(`stopped after ${result.report.layers.length} layer(s); rerun with --resume to train the rest`);
      this.log(result.table);
      this.log(`→ ${result.codebook}\n→ ${result.reportPath}`);
      return result.report;
    } finally {
      bar.stop();
      interrupt.dispose();
    }
  }
}
