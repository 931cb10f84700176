import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-write.js';
import { RESIDUALS_FOR_BITS } from '../keys/codebook.js';
import { keyCodebookFileName, readKeyCodebook, writeKeyCodebook } from '../keys/format.js';
import type { KeyReport } from '../keys/report.js';
import { trainKey } from '../keys/train-key.js';
import type { Bits, PipelineSettings } from './settings.js';
import type { PipelineStage, StageOutput } from './stage.js';

/**
 * train-key by EM for every bit width of the run, at full size (R = 11 for 1 bit, 21 for 2 bits). The residual
 * stages of the greedy EM nest (spec §3.5): stage r is trained on what stages 0..r−1 left, from a seed of its own
 * (layer, group, stage), so the first 11 stages of a 21-stage run are, bit for bit, what an 11-stage run trains.
 * The stage therefore trains the largest R once and writes each smaller codebook as its prefix — a third less EM
 * time for `--bits 1,2` (test/pipeline pins the equality against trainKey itself).
 */
export const keyStage: PipelineStage = {
  name: 'train-key',
  label: 'training key codebooks',
  async run(ctx) {
    const s = ctx.settings;
    const plan = keyPlan(s);
    const largest = plan[plan.length - 1]!;
    const trained = await trainKey({
      runDir: ctx.runDir,
      method: 'em',
      bits: largest.bits,
      residuals: largest.residuals,
      tokens: s.keyTokens,
      heldout: s.keyHeldout,
      seed: s.seed,
      backend: ctx.backend,
      em: { maxSteps: s.emSteps },
      onProgress: (done, total) => ctx.progress(done, total),
    });
    const reports = new Map<Bits, KeyReport>([[largest.bits, trained.report]]);
    const files = [trained.codebook, trained.reportPath];
    for (const p of plan.slice(0, -1)) {
      const nested = writeNestedKeyCodebook(trained.codebook, trained.report, p.bits, p.residuals);
      reports.set(p.bits, nested.report);
      files.unshift(nested.codebook, nested.reportPath);
    }
    return keyOutput(s.bits.map((b) => reports.get(b)!), files);
  },
};

/** Bit widths with their R, by R ascending (the last one is trained, the others are its prefixes). */
export function keyPlan(s: Pick<PipelineSettings, 'bits' | 'keyResiduals'>): { bits: Bits; residuals: number }[] {
  return s.bits.map((bits) => ({ bits, residuals: s.keyResiduals[bits] ?? RESIDUALS_FOR_BITS[bits] })).sort((a, b) => a.residuals - b.residuals);
}

/**
 * Writes RUN_DIR/key-codebook-em-{bits}bit.arrow as the first `residuals` stages of the codebook at `from`, and its
 * report (the same held-out errors, cut to those stages; `derived_from` names the source).
 *
 *   writeNestedKeyCodebook('runs/p/key-codebook-em-2bit.arrow', report2, 1, 11)
 */
export function writeNestedKeyCodebook(from: string, fromReport: KeyReport, bits: Bits, residuals: number): { codebook: string; reportPath: string; report: KeyReport } {
  const file = readKeyCodebook(from);
  const layers = new Map([...file.layers].map(([layer, cb]) => [layer, cb.truncate(residuals)] as const));
  const codebook = join(dirname(from), keyCodebookFileName('em', bits));
  writeKeyCodebook(codebook, { ...file.meta, bits, residuals }, layers);
  const cut = <T>(perStage: T[]) => perStage.slice(0, residuals);
  const report: KeyReport = {
    ...fromReport,
    codebook,
    bits,
    residuals,
    layers: fromReport.layers.map((l) => ({
      ...l,
      relative_error: cut(l.relative_error),
      groups: l.groups.map((g) => ({ ...g, relative_error: cut(g.relative_error) })),
      em: { steps: l.em.steps.map(cut), train_mse: l.em.train_mse.map(cut) },
    })),
  };
  const reportPath = codebook.replace(/\.arrow$/, '.report.json');
  writeFileAtomic(reportPath, [Buffer.from(JSON.stringify({ ...report, derived_from: from }, null, 1) + '\n')]);
  return { codebook, reportPath, report };
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
