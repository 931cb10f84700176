import { createBackend } from '../core/backend/create-backend.js';
import { checkCachesOnDevice } from '../core/cache-device.js';
import { resolveCacheSpec, type CacheSpec } from '../core/cache-spec.js';
import { comparedCaches, runComparison, type CacheRunReport, type ComparisonResult } from '../core/eval/run/compare.js';
import { comparisonTable } from '../core/eval/run/comparison.js';
import { shardSuffix } from '../core/eval/run/layout.js';
import { progressDetail, scoreLine } from '../core/eval/run/report.js';
import type { EvalRunResult } from '../core/eval/run/run-benchmark.js';
import type { SummaryBase } from '../core/eval/run/summary.js';
import type { Shard } from '../core/eval/shard.js';
import type { DType } from '../core/tensor/dtype.js';
import type { BaseCommand } from './base-command.js';
import type { CommonRunOptions, EvalFlags } from './eval-command.js';
import { onInterrupt } from './interrupt.js';
import { progressBar } from './progress.js';

/** Flags that say where and how a run goes, not what it computes: left out of the request a skip must match. */
const NOT_ASKED = new Set(['out', 'device', 'cache', 'shard', 'json']);

/**
 * `commvq eval <benchmark> --cache A,B,...`: every cache is checked (its device, its codebooks) before any model
 * loads, then each runs in OUT/<name> under its own lock with its own progress bar, a line per cache as it
 * finishes, and the comparison table at the end (compare.ts). Exits 130 when interrupted.
 */
export async function runEvalComparison<S extends SummaryBase>(
  command: BaseCommand,
  label: string,
  flags: EvalFlags,
  specs: readonly CacheSpec[],
  shard: Shard,
  run: (common: CommonRunOptions) => Promise<EvalRunResult<S>>,
): Promise<ComparisonResult> {
  const caches = comparedCaches(specs);
  const backend = await createBackend(flags.device);
  checkCachesOnDevice(specs, backend.device);
  for (const spec of specs) resolveCacheSpec(spec, { random: flags['random-weights'] }); // missing codebooks, before any work
  const request = Object.fromEntries(Object.entries(flags).filter(([k]) => !NOT_ASKED.has(k)));
  const interrupt = onInterrupt();
  const scope = shardSuffix(shard); // shards may share the folders: each writes only its own files
  try {
    const result = await command.withRunLock(flags.out, () => runComparison({
      out: flags.out,
      shard,
      modelDir: flags.model,
      caches,
      request,
      run: (cache, out) => {
        const bar = progressBar(`${label} ${cache.name}`, command.jsonEnabled());
        const common: CommonRunOptions = {
          modelDir: flags.model, out, cache: cache.spec, shard, backend, dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
          randomWeights: flags['random-weights'], allowNonFinite: flags['allow-nonfinite'], signal: interrupt.signal,
          onProgress: (p) => bar.update(p.done, p.total, progressDetail(p)),
        };
        return command.withRunLock(out, () => run(common), scope).finally(() => bar.stop());
      },
      onCache: (r) => command.log(cacheLine(r)),
    }), scope);
    command.log('');
    for (const line of comparisonTable(result.summary)) command.log(line);
    command.log(`comparison → ${result.comparisonPath}`);
    if (result.plots) command.log(`heatmaps → ${result.plots.png}, ${result.plots.svg}`);
    if (result.plots) command.notePngFonts();
    if (result.summary.random_weights) command.log('random weights: the scores are noise (for timing only)');
    if (result.outcome === 'interrupted') {
      command.log('interrupted: run the same command again to continue');
      process.exitCode = 130;
    } else if (result.summary.shard !== '0/1') {
      command.log(`shard ${result.summary.shard} is done; combine the shards with commvq eval merge ${flags.out}`);
    }
    return result;
  } finally {
    interrupt.dispose();
  }
}

/** `kivi-bits2: NIAH rouge1: mean 1.04 / 10 over 2 cells (2/2 examples) → OUT/kivi-bits2/summary.json`, or that it was skipped. */
function cacheLine(r: CacheRunReport): string {
  if (!r.result) return `${r.name}: finished earlier with the same request, skipped → ${r.summaryPath}`;
  const x = r.result;
  const resumed = x.resumed > 0 ? `, ${x.resumed} from an earlier run` : '';
  return `${r.name}: ${scoreLine(x.summary)} (${x.done}/${x.total} examples${resumed}) → ${x.summaryPath}`;
}
