import { join } from 'node:path';
import type { CacheSpec } from '../cache-spec.js';
import { runNiah } from '../eval/run/niah-run.js';
import type { PipelineStage, StageContext } from './stage.js';

/**
 * eval niah with the dense cache and with the CommVQ cache of every bit width, on the generated filler haystack at
 * the run's lengths and depths: RUN_DIR/niah/{dense,commvq-1bit,commvq-2bit}/ (summary.json, per-cell JSON,
 * heatmaps). Each run folder resumes on its own, cell by cell.
 */
export const niahStage: PipelineStage = {
  name: 'eval-niah',
  label: 'needle in a haystack',
  async run(ctx) {
    const s = ctx.settings;
    const caches = niahCaches(ctx);
    const cellsPerRun = s.niahLengths.length * s.niahDepths.length;
    const total = cellsPerRun * caches.length;
    const numbers: Record<string, number | null> = {};
    const files: string[] = [];
    const parts: string[] = [];
    for (const [i, { label, cache }] of caches.entries()) {
      const out = join(ctx.runDir, 'niah', label);
      const r = await runNiah({
        modelDir: ctx.modelDir,
        out,
        backend: ctx.backend,
        cache,
        lengths: s.niahLengths,
        depths: s.niahDepths,
        allowNonFinite: ctx.allowNonFinite,
        signal: ctx.signal,
        onProgress: (p) => ctx.progress(i * cellsPerRun + p.done, total, `| ${label} ${p.id}`),
      });
      numbers[`niah_${label.replace('-', '_')}`] = r.summary.overall;
      files.push(r.summaryPath, ...(r.plots ? [r.plots.svg] : []));
      parts.push(`${label} ${r.summary.overall === null ? '-' : r.summary.overall.toFixed(2)}`);
      if (r.outcome === 'interrupted') return { headline: parts.join(', '), files, numbers, interrupted: true };
    }
    return { headline: `mean score /10 over ${cellsPerRun} cells (lengths ${s.niahLengths.join(', ')}; depths ${s.niahDepths.join(', ')}%): ${parts.join(', ')}`, files, numbers };
  },
};

/** Dense, then each bit width's codebooks of the run (faithful prefill, argmax codes: the defaults). */
function niahCaches(ctx: StageContext): { label: string; cache: CacheSpec }[] {
  return [
    { label: 'dense', cache: { kind: 'dense' } },
    ...ctx.settings.bits.map((bits) => ({ label: `commvq-${bits}bit`, cache: { kind: 'commvq' as const, run: ctx.runDir, bits } })),
  ];
}
