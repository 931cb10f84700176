import { Args } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { progressBar } from '../cli/progress.js';
import { makeScale } from '../core/kv/make-scale.js';

interface ScaleReport {
  path: string;
  layers: { kind: string; layer: number; tokens: number; skipped_nan: number; skipped_zero: number; mean_scale: number }[];
}

export default class MakeScale extends BaseCommand {
  static override summary = 'Per-channel mean |x| of the collected keys and values, per layer (spec §2).';
  static override description =
    'Streams RUN_DIR/kv one window at a time into f64 sums and writes RUN_DIR/scale.arrow (one row per kind and layer). ' +
    'Windows holding NaN or only zeros are skipped and counted, as the reference skips such files.';

  static override examples = ['<%= config.bin %> make-scale runs/llama', '<%= config.bin %> make-scale runs/llama --json'];

  static override args = { runDir: Args.string({ description: 'run folder written by collect-kv', required: true }) };

  async run(): Promise<ScaleReport> {
    const { args } = await this.parse(MakeScale);
    const bar = progressBar('scaling', this.jsonEnabled());
    const result = await this.withRunLock(args.runDir, async () => makeScale(args.runDir, { onProgress: (done, total) => bar.update(done, total) }));
    bar.stop();
    const layers = result.layers.map((l) => ({
      kind: l.kind,
      layer: l.layer,
      tokens: l.tokens,
      skipped_nan: l.skippedNaN,
      skipped_zero: l.skippedZero,
      mean_scale: l.scale.reduce((a, b) => a + b, 0) / l.scale.length,
    }));
    for (const l of layers) {
      const skipped = l.skipped_nan + l.skipped_zero > 0 ? `, skipped ${l.skipped_nan} NaN and ${l.skipped_zero} all-zero windows` : '';
      this.log(`${l.kind.padEnd(5)} layer ${String(l.layer).padStart(3)}: ${l.tokens} tokens, mean scale ${l.mean_scale.toFixed(4)}${skipped}`);
    }
    this.log(`→ ${result.path}`);
    return { path: result.path, layers };
  }
}
