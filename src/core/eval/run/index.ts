/**
 * The evaluation runners: the protocols of `src/core/eval` driven through the model, with per-example predictions
 * (resumable), shards and their merge, manifests, summaries and the NIAH heatmap. The `commvq eval` commands are
 * thin adapters over these.
 *
 *   const r = await runNiah({ modelDir: 'tiny-llama', out: 'runs/niah', backend, lengths: [1000, 2000], depths: [0, 50, 100] });
 *   const m = await mergeEvalRuns({ dirs: ['runs/lb-0', 'runs/lb-1'], out: 'runs/lb' });
 *   const c = await runComparison({ out: 'runs/cmp', modelDir, caches: comparedCaches(specs), request: {}, run: (cache, out) => runNiah({ modelDir, out, backend, cache: cache.spec }) });
 */
export { openCacheFactory, type CacheDescription, type CacheFactory } from '../../cache-factory.js';
export { CACHE_KINDS, COMMVQ_DEFAULTS, resolveCacheSpec, type CacheSpec } from '../../cache-spec.js';
export { EvalRun, selectExamples, type EvalProgress, type EvalTask, type ExecuteOutcome, type Prediction } from './eval-run.js';
export { runInfinitebench, type InfiniteBenchRunOptions } from './infinitebench-run.js';
export { comparisonPaths, listComparisons, listManifests, listPredictionFiles, runPaths, shardSuffix, type RunPaths } from './layout.js';
export { comparedCaches, isComparisonFolder, mergeComparison, runComparison, type CacheRunReport, type ComparedCache, type ComparisonMergeResult, type ComparisonOptions, type ComparisonResult } from './compare.js';
export { COMPARISON_FORMAT, comparisonTable, readComparison, type ComparisonRow, type ComparisonSummary } from './comparison.js';
export { runLongbench, type LongBenchRunOptions } from './longbench-run.js';
export { EVAL_MANIFEST_FORMAT, EVAL_MANIFEST_VERSION, readEvalManifest, type Benchmark, type EvalIdentity, type EvalManifest, type EvalRunEntry, type ModelIdentity } from './manifest.js';
export { mergeEvalRuns, type MergeOptions, type MergeRunsResult } from './merge-runs.js';
export { GSM8K_PROTOCOL, gsm8kSummary, runGsm8k, type Gsm8kRunOptions, type Gsm8kSummary } from './gsm8k-run.js';
export { PERPLEXITY_PROTOCOL, perplexityTable, runPerplexity, type PerplexityRow, type PerplexityRunOptions, type PerplexityRunResult, type PerplexitySummary } from './perplexity-run.js';
export { NIAH_DEFAULT_LENGTHS, runNiah, type NiahRunOptions, type NiahSummary } from './niah-run.js';
export { runBenchmark, type EvalRunOptions, type EvalRunResult } from './run-benchmark.js';
export { EvalSession, type EvalGeneration, type EvalOutput } from './session.js';
export { EVAL_SUMMARY_FORMAT, type InfiniteBenchSummary, type LongBenchSummary, type SummaryBase } from './summary.js';
export { progressDetail, runReport, scoreLine } from './report.js';
