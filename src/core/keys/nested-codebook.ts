import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-write.js';
import { keyCodebookFileName, type Bits } from '../commvq/geometry.js';
import { readKeyCodebook, writeKeyCodebook } from './format.js';
import type { KeyReport } from './report.js';
import { trainKey, type TrainKeyOptions, type TrainKeyResult } from './train-key.js';

/**
 * Key codebooks of several bit widths from one EM run. The residual stages of the greedy EM nest (spec §3.5): stage
 * r is trained on what stages 0..r−1 left, from a seed of its own (layer, group, stage), so the first 11 stages of a
 * 21-stage run are, bit for bit, what an 11-stage run trains. Training the largest R once and writing each smaller
 * codebook as its prefix saves a third of the EM time for 1 and 2 bits. (E2E refines all stages jointly: its
 * codebooks do not nest, so each width is trained on its own.)
 *
 *   const [one, two] = await trainKeyWidths({ ...options, widths: [{ bits: 1, residuals: 11 }, { bits: 2, residuals: 21 }] });
 */
export interface KeyWidth {
  bits: Bits;
  residuals: number;
}

export type NestedKeyResult = Pick<TrainKeyResult, 'codebook' | 'reportPath' | 'report' | 'complete'>;

/** Results in the order of `widths`; `complete` is false for all when the signal stopped the run. */
export async function trainKeyWidths(o: Omit<TrainKeyOptions, 'bits' | 'residuals'> & { widths: readonly KeyWidth[] }): Promise<NestedKeyResult[]> {
  if (o.method === 'e2e') {
    const out: NestedKeyResult[] = [];
    for (const w of o.widths) out.push(await trainKey({ ...o, bits: w.bits, residuals: w.residuals }));
    return out;
  }
  const largest = [...o.widths].sort((a, b) => b.residuals - a.residuals)[0]!;
  const trained = await trainKey({ ...o, bits: largest.bits, residuals: largest.residuals });
  return o.widths.map((w) => {
    if (w === largest) return trained;
    // stopped: the trained codebook is only a partial file, and the smaller ones are cut from it once it is whole;
    // under commvq launch, rank 0 alone writes them
    if (!trained.complete || (o.collective?.rank ?? 0) > 0) return { ...trained, codebook: join(dirname(trained.codebook), keyCodebookFileName('em', w.bits)) };
    const nested = writeNestedKeyCodebook(trained.codebook, trained.report, w.bits, w.residuals);
    return { ...nested, complete: trained.complete };
  });
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
