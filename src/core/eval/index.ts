/**
 * The evaluation protocols of §8 as pure library code: LongBench, InfiniteBench and needle-in-a-haystack prompts,
 * truncation, generation settings, scoring, plus sharding and per-example prediction files. No model calls: the
 * `commvq eval` commands feed prompts to a model and hand the decoded predictions back here.
 */
export { leadingSpecialIds, withLeadingSpecialIds, type ChatTokenizer, type EvalTokenizer } from './tokenizer.js';
export { EVAL_DEPARTURES } from './departures.js';
export { infinitebenchTruncate, longbenchTruncate, promptTokenBudget, REFERENCE_MAX_PROMPT_TOKENS, type TruncatedPrompt } from './truncate.js';
export { inShard, parseShard, selectShard, WHOLE, type Shard } from './shard.js';
export { mergePredictionFiles, mergePredictions, parsePredictions, PredictionLog, readPredictionFile, type MergeResult, type PredictionRecord } from './predictions.js';
export { parseJsonl, readJsonlFile } from './jsonl.js';

export { LONGBENCH_DEFAULT_TASKS, LONGBENCH_TASKS, longbenchTask, parseLongbenchTasks, type LongBenchMetric, type LongBenchTask } from './longbench/tasks.js';
export { longbenchDataPath, parseLongbenchJsonl, readLongbenchFile, type LongBenchExample } from './longbench/data.js';
export {
  buildLongbenchPrompt,
  formatLongbenchPrompt,
  longbenchGeneration,
  longbenchPostprocess,
  newlineTokenId,
  type LongBenchChatMode,
  type LongBenchGeneration,
  type LongBenchPrompt,
} from './longbench/prompt.js';
export {
  firstLine,
  LONGBENCH_E_BUCKETS,
  longbenchAverage,
  longbenchBucket,
  longbenchMetric,
  longbenchTaskScore,
  longbenchTaskScoreE,
  scoreLongbenchExample,
  type LongBenchBucket,
  type LongBenchScoredRecord,
  type LongBenchScoreOptions,
  type LongBenchTaskScore,
} from './longbench/score.js';
export { longbenchRecord, scoreLongbenchRecords, type LongBenchRecord, type LongBenchReport } from './longbench/records.js';

export { INFINITEBENCH_PAPER_TASKS, INFINITEBENCH_PROMPT_NOTE, INFINITEBENCH_TASKS, infinitebenchTask, parseInfinitebenchTasks, type InfiniteBenchTask } from './infinitebench/tasks.js';
export { infinitebenchDataPath, parseInfinitebenchJsonl, readInfinitebenchFile, type InfiniteBenchAnswer, type InfiniteBenchExample } from './infinitebench/data.js';
export {
  buildInfinitebenchPrompt,
  formatInfinitebenchPrompt,
  infinitebenchGeneration,
  infinitebenchGroundTruth,
  type InfiniteBenchPrompt,
  type InfiniteBenchPromptMode,
} from './infinitebench/prompt.js';
export { infinitebenchTaskScore, scoreInfinitebench, type InfiniteBenchTaskScore } from './infinitebench/score.js';
export { infinitebenchRecord, scoreInfinitebenchRecords, type InfiniteBenchRecord, type InfiniteBenchReport } from './infinitebench/records.js';

export { fillerText, NIAH_FILLER_SEED } from './niah/filler.js';
export { buildHaystack, haystackFiles, withoutSpecialTokens, type Haystack, type HaystackSource } from './niah/haystack.js';
export {
  detectPeriodIds,
  insertNeedle,
  LLAMA2_PERIOD_IDS,
  NIAH_CONTEXT_BUFFER,
  NIAH_NEEDLE,
  NIAH_QUESTION,
  referenceNeedleContext,
  type NeedlePlacement,
} from './niah/needle.js';
export { NIAH_MAX_NEW_TOKENS, niahGeneration, niahMessages, niahPromptIds, referenceNiahPromptIds, type NiahPrompt } from './niah/prompt.js';
export { niahCellId, niahDepths, niahGrid, parseNiahDepths, parseNiahLengths, referenceNiahLengths, type NiahCell } from './niah/grid.js';
export { niahResponse, niahRunKey, niahScore, parseNiahScorer, type NiahCellResult, type NiahScorer } from './niah/score.js';
export { NIAH_COLORS, niahHeatmap, niahHeatmapSpec, type NiahHeatmap, type NiahHeatmapCell } from './niah/heatmap.js';

export { GSM8K_COT_EXEMPLARS, type Gsm8kExemplar } from './gsm8k/exemplars.js';
export { extractGsm8kAnswer, gsm8kCorrect, gsm8kGold, normalizeGsm8kNumber, type Gsm8kExtraction, type Gsm8kRule } from './gsm8k/answer.js';
export { blankLineTokenIds, GSM8K_TEMPLATES, gsm8kMaxNewTokens, gsm8kCutAnswer, gsm8kFewshotText, gsm8kMessages, gsm8kPromptIds, type Gsm8kTemplate } from './gsm8k/prompt.js';
export { readGsm8k, type Gsm8kExample } from './gsm8k/data.js';
export { perplexityWindows, type PerplexityWindow } from './perplexity/windows.js';
export { perplexityOf, rowsNll, type NllSum } from './perplexity/nll.js';
export { windowMode, windowNll, type WindowMode } from './perplexity/window-nll.js';
export { corpusTokens, type CorpusTokens } from './perplexity/corpus-tokens.js';

export { fuzzRatio, type FuzzBackend } from './metrics/fuzz.js';
export { normalizeAnswer, qaF1Score } from './metrics/qa-f1.js';
export { pltrdyRougeLF } from './metrics/rouge-pltrdy.js';
export { googleRouge1F, googleRougeLsum, hfRougeLsumF } from './metrics/rouge-google.js';
export { porterStem } from './metrics/porter-stemmer.js';
