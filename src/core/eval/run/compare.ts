/**
 * One eval over several caches (issue 18): each cache runs as a whole run of its own in OUT/<name> (its manifest,
 * predictions, summary, resumable on its own; layout.ts), then one comparison of them all is written at OUT
 * (comparison.ts): OUT/comparison[.shard-i-of-n].json and, for NIAH, the heatmaps side by side. The command line's
 * `eval niah|longbench|infinitebench --cache A,B,...` and the pipeline's NIAH stage both run through runComparison;
 * `eval merge` merges each cache's shards and compares them again (mergeComparison).
 *
 * Rerunning continues: a cache whose run finished with the same request (the same flags, model and cache) is skipped
 * without loading anything; any other cache reopens its folder, whose manifest check resumes it or refuses a
 * different run, as a single run's does.
 *
 *   const caches = comparedCaches([{ kind: 'dense' }, { kind: 'kivi', bits: 2 }]);   // names 'dense', 'kivi-bits2'
 *   const c = await runComparison({ out: 'runs/cmp', shard: WHOLE, modelDir, caches, request: { lengths },
 *     run: (cache, out) => runNiah({ modelDir, out, backend, cache: cache.spec, lengths }) });
 *   c.summary.caches.map((r) => r.scores.overall)
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cacheFolderName, cacheSpecText, type CacheSpec } from '../../cache-spec.js';
import { CommvqError, OptionError } from '../../errors.js';
import { cacheAverageBits } from '../../memory/cache-bits.js';
import { parseModelConfig } from '../../model/config.js';
import type { DType } from '../../tensor/dtype.js';
import { WHOLE, type Shard } from '../shard.js';
import {
  comparisonSummary,
  readComparison,
  readRunSummary,
  summaryScores,
  writeComparison,
  writeComparisonHeatmaps,
  type ComparisonRow,
  type ComparisonSummary,
} from './comparison.js';
import { comparisonPaths, listComparisons, listManifests, runPaths } from './layout.js';
import { readEvalManifest } from './manifest.js';
import { mergeEvalRuns, type MergeRunsResult } from './merge-runs.js';
import type { NiahScorer } from '../niah/score.js';
import type { EvalRunResult } from './run-benchmark.js';
import type { SummaryBase } from './summary.js';

/** One cache of a comparison and the folder it runs in. */
export interface ComparedCache {
  name: string;
  spec: CacheSpec;
}

/** What became of one cache in an invocation. */
export interface CacheRunReport {
  name: string;
  cache: string;
  out: string;
  /** finished earlier with the same request: nothing ran */
  skipped: boolean;
  /** the run's result; absent when skipped */
  result?: EvalRunResult<SummaryBase>;
  summaryPath: string;
}

export interface ComparisonResult {
  outcome: 'complete' | 'interrupted';
  out: string;
  comparisonPath: string;
  summary: ComparisonSummary;
  runs: CacheRunReport[];
  plots?: { svg: string; png: string };
}

export interface ComparisonOptions<S extends SummaryBase> {
  out: string;
  shard?: Shard;
  modelDir: string;
  caches: readonly ComparedCache[];
  /** what was asked besides the model and cache (the benchmark's options): part of the request a skip must match */
  request: Record<string, unknown>;
  /** runs (or resumes) one cache's eval into `out` */
  run(cache: ComparedCache, out: string): Promise<EvalRunResult<S>>;
  /** after each cache, run or skipped */
  onCache?(report: CacheRunReport): void;
}

/**
 * The caches of a list with their folder names: cacheFolderName, or `names` where given (the pipeline keeps its
 * `commvq-1bit`); names two specs share get `-2`, `-3` in list order. The same cache twice is refused.
 *
 *   comparedCaches([{ kind: 'commvq', bits: 2, run: 'a' }, { kind: 'commvq', bits: 2, run: 'b' }]).map((c) => c.name)   // ['commvq-bits2', 'commvq-bits2-2']
 */
export function comparedCaches(specs: readonly CacheSpec[], names?: readonly string[]): ComparedCache[] {
  const out: ComparedCache[] = [];
  const texts = new Set<string>();
  for (const [i, spec] of specs.entries()) {
    const text = cacheSpecText(spec);
    if (texts.has(text)) throw new OptionError('cache', undefined, `${text} is given twice`);
    texts.add(text);
    const base = names?.[i] ?? cacheFolderName(spec);
    let name = base;
    for (let n = 2; out.some((c) => c.name === name); n++) name = `${base}-${n}`;
    out.push({ name, spec });
  }
  return out;
}

/** Runs each cache in turn (skipping those finished with the same request), writing the comparison after each. */
export async function runComparison<S extends SummaryBase>(o: ComparisonOptions<S>): Promise<ComparisonResult> {
  const shard = o.shard ?? WHOLE;
  const held = listManifests(o.out);
  if (held.length > 0) {
    throw new CommvqError(`${o.out} holds the run of one cache (${held[0]}): a comparison runs each cache in a folder of its own`, 'give the comparison another folder');
  }
  const paths = comparisonPaths(o.out, shard);
  const previous = readComparison(paths.summary);
  const requests = new Map(o.caches.map((c) => [c.name, requestHash(o, c, shard)]));
  const runs: CacheRunReport[] = [];
  let outcome: ComparisonResult['outcome'] = 'complete';
  let written = { summary: comparisonSummary([], shard), plots: undefined as ComparisonResult['plots'] };
  for (const cache of o.caches) {
    const dir = join(o.out, cache.name);
    const summaryPath = runPaths(dir, shard).summary;
    const before = previous?.caches.find((r) => r.name === cache.name);
    const skip = before !== undefined && before.request === requests.get(cache.name) && before.complete && readRunSummary(summaryPath)?.complete === true;
    const result = skip ? undefined : ((await o.run(cache, dir)) as EvalRunResult<SummaryBase>);
    const report = { name: cache.name, cache: cacheSpecText(cache.spec), out: dir, skipped: skip, ...(result ? { result } : {}), summaryPath };
    runs.push(report);
    // each cache's row from its folder: the caches not reached yet keep what an earlier invocation left
    const asked = new Set(runs.map((r) => r.name));
    const last = result?.outcome === 'interrupted' || cache === o.caches.at(-1);
    const request = (c: ComparedCache) => (asked.has(c.name) ? requests.get(c.name)! : (previous?.caches.find((r) => r.name === c.name)?.request ?? null));
    written = await writeComparisonFiles(o.out, shard, o.caches, request, { plots: last }); // the heatmaps once, at the end
    o.onCache?.(report);
    if (result?.outcome === 'interrupted') {
      outcome = 'interrupted';
      break;
    }
  }
  return { outcome, out: o.out, comparisonPath: paths.summary, summary: written.summary, runs, ...(written.plots ? { plots: written.plots } : {}) };
}

/** The comparison of the caches' folders as they are on disk, written with its heatmaps (NIAH). */
async function writeComparisonFiles(
  out: string,
  shard: Shard,
  caches: readonly ComparedCache[],
  request: (c: ComparedCache) => string | null,
  o: { plots: boolean; knownBits?: (c: ComparedCache) => number | null },
) {
  const entries = [];
  for (const cache of caches) {
    const dir = join(out, cache.name);
    const summary = readRunSummary(runPaths(dir, shard).summary);
    const bits = (await runAverageBits(cache.spec, dir, shard)) ?? o.knownBits?.(cache) ?? null;
    entries.push({ summary, row: comparisonRow(cache, summary, bits, request(cache)) });
  }
  const summary = comparisonSummary(entries, shard);
  const paths = comparisonPaths(out, shard);
  writeComparison(paths.summary, summary);
  const plots = o.plots && summary.benchmark === 'niah' ? await writeComparisonHeatmaps(summary, entries.map((e) => e.summary), paths.plotBase) : undefined;
  return { summary, plots };
}

function comparisonRow(cache: ComparedCache, summary: SummaryBase | undefined, bits: number | null, request: string | null): ComparisonRow {
  return {
    name: cache.name,
    cache: cacheSpecText(cache.spec),
    spec: cache.spec,
    label: summary?.cache ?? null,
    average_bits: bits,
    complete: summary?.complete ?? false,
    counts: summary?.counts ?? {},
    planned: summary?.planned ?? {},
    scores: summary ? summaryScores(summary) : {},
    request,
  };
}

/**
 * A cache's average bits for the model and cache its run's manifest records (its config.json, its codebook files,
 * the dtype its exact values were held in); null before it has run, or where those files are gone.
 */
async function runAverageBits(spec: CacheSpec, dir: string, shard: Shard): Promise<number | null> {
  const manifestPath = [runPaths(dir, shard).manifest, ...listManifests(dir)].find((p) => existsSync(p));
  if (!manifestPath) return null;
  try {
    const m = readEvalManifest(manifestPath);
    const configPath = join(m.model_dir, 'config.json');
    const config = parseModelConfig(JSON.parse(readFileSync(configPath, 'utf8')), configPath);
    const books = m.identity.cache.codebooks;
    const resolved: CacheSpec = spec.kind === 'commvq' ? { ...spec, run: undefined, ...(books ? { key: books.key, value: books.value } : {}) } : spec;
    return await cacheAverageBits(resolved, { numLayers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim }, m.identity.cache.kv_dtype as DType);
  } catch (err) {
    if (err instanceof CommvqError || (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** 16 hex digits of SHA-256 over what decides a cache's run: the request, the model folder, the cache and the shard. */
function requestHash(o: Pick<ComparisonOptions<SummaryBase>, 'request' | 'modelDir'>, cache: ComparedCache, shard: Shard): string {
  const asked = { request: o.request, model: resolve(o.modelDir), cache: cacheSpecText(cache.spec), shard: `${shard.index}/${shard.count}` };
  return createHash('sha256').update(stableJson(asked)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted, so the same request always hashes the same. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

// ---- merge ---------------------------------------------------------------------------------------------------------

/** Whether a folder holds a comparison (comparison.json or a shard's) rather than one run. */
export function isComparisonFolder(dir: string): boolean {
  return listComparisons(dir).length > 0;
}

export interface ComparisonMergeResult {
  out: string;
  comparisonPath: string;
  summary: ComparisonSummary;
  /** each cache's merge (MergeRunsResult), in the comparison's order */
  merges: (MergeRunsResult & { name: string })[];
  plots?: { svg: string; png: string };
}

/**
 * `eval merge` of comparison folders: the caches their comparison files name (in order, each once), each cache's
 * shards merged from DIR/<name> of every folder into OUT/<name> (mergeEvalRuns), then the whole comparison written.
 *
 *   await mergeComparison({ dirs: ['runs/cmp'] })                        // shards written into one folder
 *   await mergeComparison({ dirs: ['runs/cmp-0', 'runs/cmp-1'], out: 'runs/cmp' })
 */
export async function mergeComparison(o: { dirs: readonly string[]; out?: string; scorer?: NiahScorer }): Promise<ComparisonMergeResult> {
  const out = o.out ?? o.dirs[0]!;
  const rows = new Map<string, ComparisonRow>();
  for (const dir of o.dirs) {
    const found = listComparisons(dir);
    if (found.length === 0) throw new CommvqError(`${dir}: no comparison (comparison.json or comparison.shard-i-of-n.json)`, 'merge comparison folders together, or run folders of one cache together');
    for (const path of found) for (const row of readComparison(path)!.caches) if (!rows.has(row.name)) rows.set(row.name, row);
  }
  const merges = [];
  for (const row of rows.values()) {
    const dirs = o.dirs.map((d) => join(d, row.name)).filter((d) => listManifests(d).length > 0);
    if (dirs.length === 0) throw new CommvqError(`${row.name} (${row.cache}): no run folder holds its predictions yet`, 'run its shards first');
    merges.push({ name: row.name, ...(await mergeEvalRuns({ dirs, out: join(out, row.name), scorer: o.scorer })) });
  }
  const caches = [...rows.values()].map((r) => ({ name: r.name, spec: r.spec }));
  const written = await writeComparisonFiles(out, WHOLE, caches, () => null, { plots: true, knownBits: (c) => rows.get(c.name)!.average_bits });
  return { out, comparisonPath: comparisonPaths(out, WHOLE).summary, summary: written.summary, merges, ...(written.plots ? { plots: written.plots } : {}) };
}
