import { join } from 'node:path';
import { collectKv } from '../kv/collect-kv.js';
import { makeScale } from '../kv/make-scale.js';
import type { PipelineStage } from './stage.js';

/**
 * The first two stages: collect-kv (pre-RoPE keys and values of every layer over the corpus, RUN_DIR/kv) and
 * make-scale (per-channel mean |x|, RUN_DIR/scale.arrow). collect-kv resumes on its own from RUN_DIR/manifest.json.
 */
export const collectStage: PipelineStage = {
  name: 'collect-kv',
  label: 'collecting keys and values',
  async run(ctx) {
    const s = ctx.settings;
    const r = await collectKv({
      modelDir: ctx.modelDir,
      corpus: ctx.corpus,
      runDir: ctx.runDir,
      backend: ctx.backend,
      tokens: s.collectTokens,
      seqLen: s.collectSeqLen,
      seed: s.seed,
      allowNonFinite: ctx.allowNonFinite,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress(p.windowsDone, p.windows, `| ${Math.round(p.tokensPerSecond)} tokens/s`),
    });
    const short = r.shortOfBudget ? ' (the corpus ran out before the budget)' : '';
    return {
      headline: `${r.tokensPerLayer} tokens per layer × ${r.layers.length} layers in ${r.windowsDone} windows of ${s.collectSeqLen}${short}`,
      files: [join(ctx.runDir, 'kv'), join(ctx.runDir, 'manifest.json')],
      numbers: { tokens_per_layer: r.tokensPerLayer, layers: r.layers.length, windows: r.windowsDone, files: r.files.length },
      interrupted: !r.complete,
    };
  },
};

export const scaleStage: PipelineStage = {
  name: 'make-scale',
  label: 'scaling',
  async run(ctx) {
    const r = makeScale(ctx.runDir, { onProgress: (done, total) => ctx.progress(done, total) });
    const mean = (kind: string) => {
      const ls = r.layers.filter((l) => l.kind === kind).map((l) => l.scale.reduce((a, b) => a + b, 0) / l.scale.length);
      return ls.reduce((a, b) => a + b, 0) / Math.max(1, ls.length);
    };
    const skipped = r.layers.reduce((n, l) => n + l.skippedNaN + l.skippedZero, 0);
    return {
      headline: `mean |k| ${mean('key').toFixed(4)}, mean |v| ${mean('value').toFixed(4)} over ${r.layers.length / 2} layers${skipped ? `, ${skipped} windows skipped` : ''}`,
      files: [r.path],
      numbers: { mean_key_scale: mean('key'), mean_value_scale: mean('value'), skipped_windows: skipped },
    };
  },
};
