import { join } from 'node:path';
import type { CacheSpec } from '../cache-spec.js';
import { comparedCaches, runComparison } from '../eval/run/compare.js';
import { runNiah } from '../eval/run/niah-run.js';
import type { PipelineStage, StageContext } from './stage.js';

/**
 * eval niah with the dense cache and with the CommVQ cache of every bit width, on the generated filler haystack at
 * the run's lengths and depths, as one comparison (eval/run/compare.ts, what `eval niah --cache A,B,...` runs):
 * RUN_DIR/niah/{dense,commvq-1bit,commvq-2bit}/ (summary.json, per-cell JSON, heatmaps), each resuming on its own,
 * cell by cell, and RUN_DIR/niah/comparison.json with the heatmaps side by side (comparison.svg, .png).
 */
export const niahStage: PipelineStage = {
  name: 'eval-niah',
  label: 'needle in a haystack',
  async run(ctx) {
    const s = ctx.settings;
    const named = niahCaches(ctx);
    const caches = comparedCaches(named.map((c) => c.cache), named.map((c) => c.label));
    const cellsPerRun = s.niahLengths.length * s.niahDepths.length;
    const total = cellsPerRun * caches.length;
    const c = await runComparison({
      out: join(ctx.runDir, 'niah'),
      modelDir: ctx.modelDir,
      caches,
      request: { lengths: s.niahLengths, depths: s.niahDepths },
      run: (cache, out) => {
        const i = caches.indexOf(cache);
        return runNiah({
          modelDir: ctx.modelDir,
          out,
          backend: ctx.backend,
          cache: cache.spec,
          lengths: s.niahLengths,
          depths: s.niahDepths,
          allowNonFinite: ctx.allowNonFinite,
          signal: ctx.signal,
          onProgress: (p) => ctx.progress(i * cellsPerRun + p.done, total, `| ${cache.name} ${p.id}`),
        });
      },
    });
    const numbers: Record<string, number | null> = {};
    const parts: string[] = [];
    for (const row of c.summary.caches) {
      numbers[`niah_${row.name.replace('-', '_')}`] = row.scores.overall ?? null;
      parts.push(`${row.name} ${typeof row.scores.overall === 'number' ? row.scores.overall.toFixed(2) : '-'}`);
    }
    const files = [...c.runs.map((r) => r.summaryPath), c.comparisonPath, ...(c.plots ? [c.plots.svg] : [])];
    if (c.outcome === 'interrupted') return { headline: parts.join(', '), files, numbers, interrupted: true };
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
