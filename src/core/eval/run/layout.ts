/**
 * Where an evaluation run writes (`--out DIR`). A whole run and each shard of one write side by side without
 * touching each other's files, so shards may share a folder or use separate ones; `commvq eval merge` reads either.
 *
 *   DIR/manifest[.shard-i-of-n].json          what ran: model, cache, protocol, versions, departures, run history
 *   DIR/predictions/<task>[.shard-i-of-n].jsonl  one line per finished example (PredictionLog)
 *   DIR/summary[.shard-i-of-n].json           scores of the predictions present
 *   DIR/cells/<model>__<cache>/len_L_depth_d.json, DIR/niah[.shard-i-of-n].{svg,png}   (NIAH)
 *
 * A comparison of several caches (compare.ts) holds one such run per cache, DIR/<name>/, and beside them
 *
 *   DIR/comparison[.shard-i-of-n].json        cache × metric, average bits
 *   DIR/comparison[.shard-i-of-n].{svg,png}   the NIAH heatmaps side by side
 *
 *   const paths = runPaths('out/qasper-dense', parseShard('1/2'));
 *   paths.predictions('qasper')  // out/qasper-dense/predictions/qasper.shard-1-of-2.jsonl
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Shard } from '../shard.js';

export function shardSuffix(shard: Shard): string {
  return shard.count === 1 ? '' : `.shard-${shard.index}-of-${shard.count}`;
}

export interface RunPaths {
  dir: string;
  manifest: string;
  summary: string;
  predictionsDir: string;
  predictions(task: string): string;
  /** each example's prefill and decode milliseconds, apart from the predictions (whose bytes a rerun reproduces) */
  times(task: string): string;
  /** the NIAH heatmap without its extension (`.svg` and `.png` are written) */
  plotBase: string;
  cellsDir(runKey: string): string;
}

export function runPaths(dir: string, shard: Shard): RunPaths {
  const s = shardSuffix(shard);
  return {
    dir,
    manifest: join(dir, `manifest${s}.json`),
    summary: join(dir, `summary${s}.json`),
    predictionsDir: join(dir, 'predictions'),
    predictions: (task) => join(dir, 'predictions', `${task}${s}.jsonl`),
    times: (task) => join(dir, 'times', `${task}${s}.jsonl`),
    plotBase: join(dir, `niah${s}`),
    cellsDir: (runKey) => join(dir, 'cells', runKey),
  };
}

/** A comparison's files at its folder (compare.ts): the summary, and the NIAH heatmaps' base name. */
export function comparisonPaths(dir: string, shard: Shard): { summary: string; plotBase: string } {
  const s = shardSuffix(shard);
  return { summary: join(dir, `comparison${s}.json`), plotBase: join(dir, `comparison${s}`) };
}

const COMPARISON_NAME = /^comparison(?:\.shard-\d+-of-\d+)?\.json$/;

/** The files of a folder whose names match, sorted, as paths; none where the folder is missing. */
function listMatching(dir: string, name: RegExp): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => name.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** Every comparison summary in a folder (the whole comparison's and each shard's), sorted. */
export function listComparisons(dir: string): string[] {
  return listMatching(dir, COMPARISON_NAME);
}

const MANIFEST_NAME = /^manifest(?:\.shard-\d+-of-\d+)?\.json$/;
const PREDICTION_NAME = /^(.+?)(?:\.shard-\d+-of-\d+)?\.jsonl$/;

/** Every run manifest in a folder (the whole run's and each shard's), sorted. */
export function listManifests(dir: string): string[] {
  return listMatching(dir, MANIFEST_NAME);
}

/** Every prediction file in a run folder with the task it holds, sorted by file name. */
export function listPredictionFiles(dir: string): { task: string; path: string }[] {
  const pred = join(dir, 'predictions');
  if (!existsSync(pred)) return [];
  return readdirSync(pred)
    .sort()
    .flatMap((f) => {
      const m = PREDICTION_NAME.exec(f);
      return m ? [{ task: m[1]!, path: join(pred, f) }] : [];
    });
}
