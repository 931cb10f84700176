/**
 * comparison.json: one eval's scores for several caches side by side, cache × metric (NIAH: overall and per length;
 * LongBench, InfiniteBench: per task and the average; GSM8K: accuracy), with each cache's average bits (memory/cache-bits.ts). Like
 * summary.json it is recomputed from the caches' own summaries every time it is written, so it never disagrees with
 * them. compare.ts decides when it is written; this file says what it holds, prints it as a table and draws the NIAH
 * heatmaps side by side.
 *
 *   const c = comparisonSummary(rows, WHOLE);
 *   comparisonTable(c)   // ['cache  avg bits  overall  260  300', 'dense  32.00  1.04  ...', ...]
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheSpec } from '../../cache-spec.js';
import { CommvqError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { writeVegaLite } from '../../plot/heatmap-render.js';
import { niahComparisonSpec } from '../niah/heatmap.js';
import type { Shard } from '../shard.js';
import { niahSummaryGrid, type NiahSummary } from './niah-run.js';
import type { SummaryBase } from './summary.js';
import { readJsonFile } from '../../io/read-text.js';

export const COMPARISON_FORMAT = 'commvq.eval-comparison';
export const COMPARISON_VERSION = 1;

/** One cache of a comparison: its scores as its own run folder's summary has them. */
export interface ComparisonRow {
  /** its run folder under the comparison's (compare.ts cacheFolderName, made unique) */
  name: string;
  /** the spec in the --cache grammar, and as the library takes it */
  cache: string;
  spec: CacheSpec;
  /** what its runs record it as (CacheDescription.label); null until it has run */
  label: string | null;
  /** the CommVQ paper's average bits (memory/cache-bits.ts); null where they could not be worked out */
  average_bits: number | null;
  complete: boolean;
  counts: Record<string, number>;
  planned: Record<string, number>;
  /** column → score: NIAH 0–10, LongBench and InfiniteBench 0–100, GSM8K percent */
  scores: Record<string, number | null>;
  /** what was asked of it (a hash, compare.ts): a finished cache asked the same again is skipped */
  request: string | null;
}

export interface ComparisonSummary {
  format: typeof COMPARISON_FORMAT;
  version: typeof COMPARISON_VERSION;
  benchmark: string | null;
  model: string | null;
  /** '0/1' for a whole or merged comparison, 'i/n' for a shard */
  shard: string;
  /** every cache's run is complete */
  complete: boolean;
  /** what the scores are: `NIAH rouge1 (0-10)`, `LongBench (0-100)` */
  metric: string;
  /** the score columns in order: NIAH `overall` then each length; GSM8K `accuracy`; the tasks then `average` */
  columns: string[];
  caches: ComparisonRow[];
  /** present, true, where the runs used seeded random weights (their scores are noise) */
  random_weights?: true;
}

/** The score columns a run's summary gives: NIAH's overall and per-length means, or the task scores and their average. */
export function summaryScores(s: SummaryBase): Record<string, number | null> {
  const x = s as Partial<NiahSummary> & { scores?: Record<string, number>; average?: number | null; accuracy?: number | null };
  if (s.benchmark === 'niah') return { overall: x.overall ?? null, ...x.by_length };
  if (s.benchmark === 'gsm8k') return { accuracy: x.accuracy ?? null };
  return { ...x.scores, average: x.average ?? null };
}

/**
 * The comparison of rows whose runs' summaries are `summaries` (undefined for a cache that has not run yet).
 *
 *   comparisonSummary([{ row, summary }], WHOLE).columns   // ['overall', '260', '300']
 */
export function comparisonSummary(entries: readonly { row: ComparisonRow; summary?: SummaryBase }[], shard: Shard): ComparisonSummary {
  const first = entries.find((e) => e.summary)?.summary;
  const benchmark = first?.benchmark ?? null;
  const scoreColumns = [...new Set(entries.flatMap((e) => Object.keys(e.row.scores)))];
  const columns =
    benchmark === 'niah' ? ['overall', ...scoreColumns.filter((c) => c !== 'overall').sort((a, b) => Number(a) - Number(b))]
    : benchmark === 'gsm8k' ? ['accuracy']
    : [...scoreColumns.filter((c) => c !== 'average'), 'average'];
  return {
    format: COMPARISON_FORMAT,
    version: COMPARISON_VERSION,
    benchmark,
    model: first?.model ?? null,
    shard: `${shard.index}/${shard.count}`,
    complete: entries.every((e) => e.row.complete),
    metric: metricName(first),
    columns: benchmark === null ? [] : columns,
    caches: entries.map((e) => e.row),
    ...(entries.some((e) => e.summary?.random_weights) ? { random_weights: true as const } : {}),
  };
}

function metricName(s: SummaryBase | undefined): string {
  if (!s) return 'none yet';
  if (s.benchmark === 'niah') return `NIAH ${(s as NiahSummary).scorer} (0-10)`;
  if (s.benchmark === 'gsm8k') return 'GSM8K accuracy (%)';
  return `${s.benchmark === 'longbench' ? 'LongBench' : 'InfiniteBench'} (0-100)`;
}

/**
 * The comparison as text: a header, one line per cache (average bits, then each column; `-` where a cache has no
 * score, `*` after the name of a cache whose run is not complete), and a note saying what `*` means when one has it.
 */
export function comparisonTable(c: ComparisonSummary): string[] {
  const header = ['cache', 'avg bits', ...c.columns];
  const rows = c.caches.map((r) => [
    `${r.name}${r.complete ? '' : '*'}`,
    r.average_bits === null ? '-' : r.average_bits.toFixed(2),
    ...c.columns.map((col) => (r.scores[col] === undefined || r.scores[col] === null ? '-' : r.scores[col]!.toFixed(2))),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ').trimEnd();
  const lines = [`${c.model ?? '?'} · ${c.metric}`, line(header), ...rows.map(line)];
  if (!c.complete) lines.push('* not complete: some planned examples have no prediction yet');
  return lines;
}

export function writeComparison(path: string, c: ComparisonSummary): void {
  writeFileAtomic(path, [Buffer.from(JSON.stringify(c, null, 1) + '\n')]);
}

/** A comparison file, or undefined where there is none; refuses another file or version. */
export function readComparison(path: string): ComparisonSummary | undefined {
  if (!existsSync(path)) return undefined;
  const json = readJsonFile<ComparisonSummary>(path);
  if (json?.format !== COMPARISON_FORMAT) throw new CommvqError(`${path}: not a commvq eval comparison`);
  if (json.version !== COMPARISON_VERSION) throw new CommvqError(`${path}: comparison version ${json.version}, this commvq reads ${COMPARISON_VERSION}`, 'rerun the eval into a new folder');
  return json;
}

/** A run folder's summary (summary[.shard-i-of-n].json), or undefined where it has none yet. */
export function readRunSummary(path: string): SummaryBase | undefined {
  if (!existsSync(path)) return undefined;
  return readJsonFile<SummaryBase>(path, 'rerun the eval of that cache (or eval merge its folder) to write it again');
}

/** The NIAH heatmaps of the caches that have cells, side by side in `<base>.svg` and `.png`; nothing when none has. */
export async function writeComparisonHeatmaps(c: ComparisonSummary, summaries: readonly (SummaryBase | undefined)[], base: string): Promise<{ svg: string; png: string } | undefined> {
  const panels = c.caches.flatMap((row, i) => {
    const s = summaries[i] as NiahSummary | undefined;
    if (!s || s.lengths.length === 0) return [];
    const bits = row.average_bits === null ? '' : ` · ${row.average_bits.toFixed(2)} bits`;
    return [{ title: `${row.name}${bits} · mean ${s.overall?.toFixed(2)}`, grid: niahSummaryGrid(s) }];
  });
  if (panels.length === 0) return undefined;
  const random = c.random_weights ? ' (random weights)' : '';
  return writeVegaLite(niahComparisonSpec(panels, { title: `${c.model}${random} · ${c.metric}` }), base);
}

/** Where a comparison row's run folder is. */
export function rowDir(out: string, row: Pick<ComparisonRow, 'name'>): string {
  return join(out, row.name);
}
