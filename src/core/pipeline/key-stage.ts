import { RESIDUALS_FOR_BITS, type Bits } from '../commvq/geometry.js';
import { trainKeyWidths } from '../keys/nested-codebook.js';
import type { KeyReport } from '../keys/report.js';
import type { PipelineSettings } from './settings.js';
import type { PipelineStage, StageOutput } from './stage.js';

/**
 * train-key by EM for every bit width of the run, at full size (R = 11 for 1 bit, 21 for 2 bits): the largest R is
 * trained once and the smaller codebooks are its prefixes (trainKeyWidths; test/pipeline pins the equality against
 * trainKey itself).
 */
export const keyStage: PipelineStage = {
  name: 'train-key',
  label: 'training key codebooks',
  async run(ctx) {
    const s = ctx.settings;
    const plan = keyPlan(s);
    const results = await trainKeyWidths({
      runDir: ctx.runDir,
      method: 'em',
      widths: plan,
      tokens: s.keyTokens,
      heldout: s.keyHeldout,
      seed: s.seed,
      backend: ctx.backend,
      em: { maxSteps: s.emSteps },
      onProgress: (done, total) => ctx.progress(done, total),
      signal: ctx.signal,
      resume: true, // the layers an interrupted pipeline finished (same run folder, same settings) are kept
    });
    if (results.some((r) => !r.complete)) return { headline: `${results[0]!.report.layers.length} layer(s) trained`, files: [], numbers: {}, interrupted: true };
    const reports = new Map<Bits, KeyReport>(plan.map((p, i) => [p.bits, results[i]!.report]));
    const files = results.flatMap((r) => [r.codebook, r.reportPath]);
    return keyOutput(s.bits.map((b) => reports.get(b)!), files);
  },
};

/** Bit widths with their R, by R ascending (the last one is trained, the others are its prefixes). */
export function keyPlan(s: Pick<PipelineSettings, 'bits' | 'keyResiduals'>): { bits: Bits; residuals: number }[] {
  return s.bits.map((bits) => ({ bits, residuals: s.keyResiduals[bits] ?? RESIDUALS_FOR_BITS[bits] })).sort((a, b) => a.residuals - b.residuals);
}

function keyOutput(reports: KeyReport[], files: string[]): StageOutput {
  const numbers: StageOutput['numbers'] = {};
  const parts: string[] = [];
  for (const r of reports) {
    const finals = r.layers.map((l) => l.relative_error[r.residuals - 1]!);
    const mse = r.layers.map((l) => mean(l.em.train_mse.map((g) => g[r.residuals - 1]!)));
    numbers[`key_relative_error_${r.bits}bit`] = mean(finals);
    numbers[`key_relative_error_${r.bits}bit_worst_layer`] = Math.max(...finals);
    numbers[`key_train_mse_${r.bits}bit`] = mean(mse);
    numbers[`key_residuals_${r.bits}bit`] = r.residuals;
    parts.push(`${r.bits}-bit R ${r.residuals}: held-out ‖k−k̂‖²/‖k‖² ${pct(mean(finals))} (worst layer ${pct(Math.max(...finals))}), train MSE ${mean(mse).toExponential(2)}`);
  }
  return { headline: parts.join('; '), files, numbers };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
