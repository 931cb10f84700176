/**
 * summary.json: the scores of the predictions present in a run folder, recomputed from them every time (a run, a
 * resume, a merge), so a summary never disagrees with its predictions. It holds no timings or paths: two runs with
 * the same predictions write the same bytes. Timings live in the manifest's run history.
 *
 *   writeSummary(paths.summary, longbenchSummary(manifest, records, manifest.planned));
 */
import { writeFileAtomic } from '../../io/atomic-write.js';
import { scoreInfinitebenchRecords } from '../infinitebench/records.js';
import { scoreLongbenchRecords, type LongBenchReport } from '../longbench/records.js';
import type { PredictionRecord } from '../predictions.js';
import type { EvalManifest } from './manifest.js';

export const EVAL_SUMMARY_FORMAT = 'commvq.eval-summary';

export interface SummaryBase {
  format: typeof EVAL_SUMMARY_FORMAT;
  version: 1;
  benchmark: string;
  model: string;
  cache: string;
  /** every planned example has a prediction */
  complete: boolean;
  /** predictions per task */
  counts: Record<string, number>;
  /** examples per task the run (or, merged, all shards) planned */
  planned: Record<string, number>;
  /** '0/1' for a whole or merged run, 'i/n' for a shard */
  shard: string;
  /** present, true, only for a run on seeded random weights (its scores are noise) */
  random_weights?: true;
}

export function summaryBase(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): SummaryBase {
  const counts: Record<string, number> = {};
  for (const t of Object.keys(planned)) counts[t] = 0;
  for (const r of records) counts[r.task] = (counts[r.task] ?? 0) + 1;
  return {
    format: EVAL_SUMMARY_FORMAT,
    version: 1,
    benchmark: manifest.identity.benchmark,
    model: manifest.identity.model.name,
    cache: manifest.identity.cache.label,
    complete: Object.entries(planned).every(([t, n]) => (counts[t] ?? 0) >= n),
    counts,
    planned,
    shard: `${manifest.shard.index}/${manifest.shard.count}`,
    ...(manifest.identity.model.random_weights ? { random_weights: true as const } : {}),
  };
}

export interface LongBenchSummary extends SummaryBase {
  /** task → round(100 · mean, 2), as LongBench's eval.py */
  scores: Record<string, number>;
  /** unweighted over the tasks with predictions; null when there are none */
  average: number | null;
  /** LongBench-E: task → length bucket → score */
  buckets?: LongBenchReport['buckets'];
}

export function longbenchSummary(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): LongBenchSummary {
  const e = manifest.identity.protocol.e === true;
  const report = records.length > 0 ? scoreLongbenchRecords(records, { e }) : undefined;
  return {
    ...summaryBase(manifest, records, planned),
    scores: report?.tasks ?? {},
    average: report?.average ?? null,
    ...(e ? { buckets: report?.buckets ?? {} } : {}),
  };
}

export interface InfiniteBenchSummary extends SummaryBase {
  /** task → mean in [0, 1], as compute_scores.py prints it */
  means: Record<string, number>;
  /** task → round(100 · mean, 2), the paper's table */
  scores: Record<string, number>;
  average: number | null;
}

export function infinitebenchSummary(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): InfiniteBenchSummary {
  const report = records.length > 0 ? scoreInfinitebenchRecords(records) : undefined;
  return { ...summaryBase(manifest, records, planned), means: report?.means ?? {}, scores: report?.tasks ?? {}, average: report?.average ?? null };
}

export function writeSummary(path: string, summary: SummaryBase): void {
  writeFileAtomic(path, [Buffer.from(JSON.stringify(summary, null, 1) + '\n')]);
}
