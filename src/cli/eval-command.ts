import type { Backend } from '../core/backend/backend.js';
import { createBackend } from '../core/backend/create-backend.js';
import type { CacheSpec } from '../core/cache-spec.js';
import type { EvalProgress } from '../core/eval/run/eval-run.js';
import { progressDetail, runReport } from '../core/eval/run/report.js';
import type { EvalRunResult } from '../core/eval/run/run-benchmark.js';
import type { SummaryBase } from '../core/eval/run/summary.js';
import { shardSuffix } from '../core/eval/run/layout.js';
import { parseShard, type Shard } from '../core/eval/shard.js';
import type { DType } from '../core/tensor/dtype.js';
import type { BaseCommand } from './base-command.js';
import { parseCacheList } from './cache-flag.js';
import { runEvalComparison } from './eval-compare.js';
import type { ComparisonResult } from '../core/eval/run/compare.js';
import { onInterrupt } from './interrupt.js';
import { progressBar } from './progress.js';
import { checkOutputDir } from '../core/options/path-option.js';
import { CommvqError } from '../core/errors.js';
import { mergeEvalRuns } from '../core/eval/run/merge-runs.js';
import { scoreLine } from '../core/eval/run/report.js';
import { distEnv } from '../core/parallel/dist-env.js';
import { shardJob } from '../core/parallel/shard-job.js';

/** What every eval runner takes from the shared flags (eval-flags.ts). */
export interface CommonRunOptions {
  modelDir: string;
  out: string;
  cache: CacheSpec;
  shard: Shard;
  backend: Backend;
  dtype?: DType;
  randomWeights: boolean;
  allowNonFinite: boolean;
  signal: AbortSignal;
  onProgress: (p: EvalProgress) => void;
}

/** The shared flags (eval-flags.ts) as a command parsed them, with its own flags beside them. */
export type EvalFlags = { model: string; 'random-weights': boolean; 'allow-nonfinite': boolean; out: string; cache: string; shard: string; device: string; dtype: string };

/** What an eval command returns: the run of its one cache, or the comparison of a --cache list. */
export type EvalCommandResult<S extends SummaryBase> = EvalRunResult<S> | ComparisonResult;

/**
 * The frame of `commvq eval <benchmark>`: parses the shared flags, runs the benchmark with a progress bar and Ctrl-C
 * handling, prints the report, and exits 130 when interrupted. A --cache list runs each cache in a folder of its own
 * under --out and compares them (eval-compare.ts); one cache writes --out itself, as it always has. Under `commvq
 * launch`, rank r of W runs shard r/W of one cache and, once every shard has completed, rank 0 merges them (eval merge)
 * and prints the merged score.
 *
 *   return runEvalCommand(this, 'longbench', flags, (common) => runLongbench({ ...common, dataDir: flags.data }));
 */
export async function runEvalCommand<S extends SummaryBase>(
  command: BaseCommand,
  label: string,
  flags: EvalFlags,
  run: (common: CommonRunOptions) => Promise<EvalRunResult<S>>,
): Promise<EvalCommandResult<S>> {
  checkOutputDir('out', flags.out);
  const caches = parseCacheList(flags.cache);
  const env = distEnv();
  if (env.worldSize > 1 && flags.shard !== '0/1') throw new CommvqError(`--shard ${flags.shard}: commvq launch gives each rank its shard (rank/world)`, 'leave --shard out under commvq launch');
  if (env.worldSize > 1 && caches.length > 1) throw new CommvqError(`--cache ${flags.cache}: one cache per command under commvq launch`, 'launch one eval per cache, or run the list in one process');
  if (caches.length > 1) return runEvalComparison(command, label, flags, caches, parseShard(flags.shard), run);
  const cache = caches[0]!;
  const job = await shardJob(env);
  const shard = job?.shard ?? parseShard(flags.shard);
  const interrupt = onInterrupt();
  const bar = progressBar(label, command.jsonEnabled());
  try {
    const result = await command.withRunLock(flags.out, async () => run({
      modelDir: flags.model,
      out: flags.out,
      cache,
      shard,
      backend: await createBackend(flags.device),
      dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
      randomWeights: flags['random-weights'],
      allowNonFinite: flags['allow-nonfinite'],
      signal: interrupt.signal,
      onProgress: (p) => bar.update(p.done, p.total, progressDetail(p)),
    }), shardSuffix(shard)); // shards may share a folder: each writes only its own files
    bar.stop();
    if (!job) for (const line of runReport(result)) command.log(line); // under launch: rank 0's merged line below
    if (result.plots) command.notePngFonts();
    if (result.outcome === 'interrupted') process.exitCode = 130;
    if (job && (await job.finish(result.outcome === 'complete')) && job.rank === 0) {
      const merged = await command.withRunLock(flags.out, () => mergeEvalRuns({ dirs: [flags.out] }));
      command.log(`merged ${shard.count} shards: ${scoreLine(merged.summary)} → ${merged.summaryPath}`);
    }
    return result;
  } finally {
    bar.stop();
    interrupt.dispose();
    job?.close();
  }
}
