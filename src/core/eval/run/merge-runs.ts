/**
 * `commvq eval merge`: combines the shards of one run (in one folder or several) into whole-run files and scores
 * them again: per task one `predictions/<task>.jsonl` in dataset order, a manifest with every shard's run history,
 * summary.json, and for NIAH the per-cell files and the heatmap. Every manifest read must describe the same run
 * (model, cache, protocol); the same example twice must have the same prediction. Merging one whole-run folder
 * into itself rescores it (after a scorer change, or with another NIAH scorer).
 *
 *   const r = await mergeEvalRuns({ dirs: ['runs/a-shard0', 'runs/a-shard1'], out: 'runs/a' });
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { CommvqError } from '../../errors.js';
import { mergePredictionFiles, type PredictionRecord } from '../predictions.js';
import type { NiahScorer } from '../niah/score.js';
import { niahRunKey } from '../niah/score.js';
import { WHOLE } from '../shard.js';
import { listManifests, listPredictionFiles, runPaths } from './layout.js';
import { checkSameIdentity, EVAL_MANIFEST_FORMAT, EVAL_MANIFEST_VERSION, evalVersions, readEvalManifest, writeEvalManifest, type EvalManifest } from './manifest.js';
import { gsm8kSummary } from './gsm8k-run.js';
import { niahCellResult, niahScoring, niahSummary, writeNiahCell, writeNiahHeatmap } from './niah-run.js';
import { infinitebenchSummary, longbenchSummary, writeSummary, type SummaryBase } from './summary.js';

export interface MergeOptions {
  /** run folders (`--out` of eval runs), each holding one or more shards */
  dirs: readonly string[];
  /** where the merged run goes (default: the first folder) */
  out?: string;
  /** NIAH: score with this scorer instead of the run's */
  scorer?: NiahScorer;
}

export interface MergeRunsResult {
  out: string;
  benchmark: string;
  manifests: string[];
  predictionFiles: string[];
  /** records written, per task */
  counts: Record<string, number>;
  /** identical repeats dropped */
  duplicates: number;
  /** files whose last line was cut short by a crash (that line is not merged) */
  truncatedTails: string[];
  summaryPath: string;
  manifestPath: string;
  summary: SummaryBase;
  plots?: { svg: string; png: string };
}

export async function mergeEvalRuns(o: MergeOptions): Promise<MergeRunsResult> {
  if (o.dirs.length === 0) throw new CommvqError('eval merge: no run folders given');
  const out = o.out ?? o.dirs[0]!;
  const inputs = [...new Set(o.dirs.map((d) => resolve(d)))];
  const manifestPaths = inputs.flatMap((d) => {
    const found = listManifests(d);
    if (found.length === 0) throw new CommvqError(`${d}: no eval manifest (manifest.json or manifest.shard-i-of-n.json)`, 'give the run folders that commvq eval wrote');
    return found;
  });
  const manifests = manifestPaths.map(readEvalManifest);
  const first = manifests[0]!;
  const hint = 'merge only the shards of one run: same model, cache and protocol';
  manifests.forEach((m, i) => checkSameIdentity(m.identity, first.identity, manifestPaths[i]!, hint));
  if (!inputs.includes(resolve(out))) for (const p of listManifests(out)) checkSameIdentity(readEvalManifest(p).identity, first.identity, p, hint);

  const files = inputs.flatMap(listPredictionFiles);
  const tasks = [...new Set([...manifests.flatMap((m) => m.tasks), ...files.map((f) => f.task)])];
  const paths = runPaths(out, WHOLE);
  mkdirSync(paths.predictionsDir, { recursive: true });
  const records: PredictionRecord[] = [];
  const counts: Record<string, number> = {};
  let duplicates = 0;
  const truncatedTails: string[] = [];
  for (const task of tasks) {
    const taskFiles = files.filter((f) => f.task === task).map((f) => f.path);
    if (taskFiles.length === 0) continue;
    const merged = mergePredictionFiles(taskFiles, paths.predictions(task));
    const wrong = merged.records.find((r) => r.task !== task);
    if (wrong) throw new CommvqError(`${taskFiles.join(', ')}: holds a ${wrong.task} record among the ${task} predictions`);
    records.push(...merged.records);
    counts[task] = merged.records.length;
    duplicates += merged.duplicates;
    truncatedTails.push(...merged.truncatedTails);
  }

  const manifest = mergedManifest(manifests, manifestPaths, tasks, o.scorer);
  writeEvalManifest(paths.manifest, manifest);
  const summary = summarize(manifest, records);
  writeSummary(paths.summary, summary);
  let plots: { svg: string; png: string } | undefined;
  if (manifest.identity.benchmark === 'niah') {
    const scoring = niahScoring(manifest);
    const cellsDir = paths.cellsDir(niahRunKey(manifest.identity.model.name, manifest.identity.cache.label));
    for (const r of records) writeNiahCell(cellsDir, niahCellResult(r, { model: manifest.identity.model.name, cache: manifest.identity.cache.label, ...scoring }));
    plots = await writeNiahHeatmap(manifest, summary as ReturnType<typeof niahSummary>, paths);
  }
  return {
    out,
    benchmark: manifest.identity.benchmark,
    manifests: manifestPaths,
    predictionFiles: files.map((f) => f.path),
    counts,
    duplicates,
    truncatedTails,
    summaryPath: paths.summary,
    manifestPath: paths.manifest,
    summary,
    ...(plots ? { plots } : {}),
  };
}

function summarize(manifest: EvalManifest, records: readonly PredictionRecord[]): SummaryBase {
  switch (manifest.identity.benchmark) {
    case 'longbench':
      return longbenchSummary(manifest, records, manifest.planned);
    case 'infinitebench':
      return infinitebenchSummary(manifest, records, manifest.planned);
    case 'niah':
      return niahSummary(manifest, records, manifest.planned);
    case 'gsm8k':
      return gsm8kSummary(manifest, records, manifest.planned);
  }
}

/** The whole run's manifest: the shards' identity, the largest plan per task, every run entry once. */
function mergedManifest(manifests: readonly EvalManifest[], sources: readonly string[], tasks: readonly string[], scorer: NiahScorer | undefined): EvalManifest {
  const first = manifests[0]!;
  const planned: Record<string, number> = {};
  for (const m of manifests) for (const [t, n] of Object.entries(m.planned_all)) planned[t] = Math.max(planned[t] ?? 0, n);
  const runs = [...new Map(manifests.flatMap((m) => m.runs.map((r) => [JSON.stringify(r), r] as const))).values()];
  const limits = new Set(manifests.map((m) => m.limit));
  return {
    format: EVAL_MANIFEST_FORMAT,
    version: EVAL_MANIFEST_VERSION,
    identity: first.identity,
    model_dir: first.model_dir,
    data_dir: first.data_dir,
    shard: WHOLE,
    limit: limits.size === 1 ? first.limit : null,
    tasks: [...tasks],
    planned,
    planned_all: planned,
    settings: { ...first.settings, ...(scorer ? { scorer } : {}) },
    departures: first.departures,
    versions: evalVersions(),
    runs,
    merged_from: [...sources],
  };
}
