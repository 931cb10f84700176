/**
 * LongBench eval.py (§8.1): per example, the first line for trec/triviaqa/samsum/lsht, then the max of the metric
 * over the gold answers (starting from 0); per task round(100 · mean, 2); LongBench-E buckets by length (0-4k,
 * 4-8k, 8k+) with NumPy's mean and rounding; the average over the tasks run.
 *
 *   scoreLongbenchExample(longbenchTask('triviaqa'), '\nParis\nmore', ['Paris'], null)  // 1
 *   longbenchTaskScore(task, records).score                                            // e.g. 41.27
 */
import { CommvqError } from '../../errors.js';
import { classificationScore, codeSimScore, countScore, retrievalScore } from '../metrics/longbench-metrics.js';
import { qaF1Score } from '../metrics/qa-f1.js';
import { pltrdyRougeLF } from '../metrics/rouge-pltrdy.js';
import type { FuzzBackend } from '../metrics/fuzz.js';
import { npMean, npRound, pyLstrip, pyRound } from '../py.js';
import type { LongBenchMetric, LongBenchTask } from './tasks.js';

export interface LongBenchScoreOptions {
  /** which SequenceMatcher fuzzywuzzy used (see fuzz.ts); default 'levenshtein' */
  fuzzBackend?: FuzzBackend;
  /** reproduce pltrdy rouge's RecursionError → 0 on very long sentence pairs; default true */
  rougeRecursionLimit?: boolean;
}

/** One prediction record as eval.py reads it from `pred/<model>/<task>.jsonl`. */
export interface LongBenchScoredRecord {
  pred: string;
  answers: readonly string[];
  allClasses: readonly string[] | null;
  length: number;
}

/** The metric of one (prediction, gold) pair. */
export function longbenchMetric(metric: LongBenchMetric, prediction: string, groundTruth: string, allClasses: readonly string[] | null, options: LongBenchScoreOptions = {}): number {
  switch (metric) {
    case 'qa_f1':
      return qaF1Score(prediction, groundTruth);
    case 'rouge':
      return pltrdyRougeLF(prediction, groundTruth, { recursionLimit: options.rougeRecursionLimit });
    case 'classification':
      return classificationScore(prediction, groundTruth, allClasses);
    case 'code_sim':
      return codeSimScore(prediction, groundTruth, options.fuzzBackend);
    case 'count':
      return countScore(prediction, groundTruth);
    case 'retrieval':
      return retrievalScore(prediction, groundTruth, 'en');
    case 'retrieval_zh':
      return retrievalScore(prediction, groundTruth, 'zh');
    case 'qa_f1_zh':
    case 'rouge_zh':
      throw new CommvqError(`the ${metric} metric segments Chinese words with jieba, which this toolkit does not reproduce`, 'score the Chinese tasks with the reference eval.py');
  }
}

/** The first line eval.py keeps for trec, triviaqa, samsum, lsht: `prediction.lstrip("\n").split("\n")[0]`. */
export function firstLine(prediction: string): string {
  return pyLstrip(prediction, '\n').split('\n')[0];
}

/** One example's score in [0, 1]: max over the gold answers, starting from 0. */
export function scoreLongbenchExample(task: LongBenchTask, prediction: string, answers: readonly string[], allClasses: readonly string[] | null, options: LongBenchScoreOptions = {}): number {
  const pred = task.firstLineOnly ? firstLine(prediction) : prediction;
  let score = 0.0;
  for (const gold of answers) score = Math.max(score, longbenchMetric(task.metric, pred, gold, allClasses, options));
  return score;
}

export interface LongBenchTaskScore {
  task: string;
  /** round(100 · total / n, 2), Python's rounding */
  score: number;
  n: number;
  perExample: number[];
}

/**
 * scorer(): the task score over its records. eval.py passes the all_classes of the *last* record read to every
 * example (they are the same within a task in the official data); reproduced.
 */
export function longbenchTaskScore(task: LongBenchTask, records: readonly LongBenchScoredRecord[], options: LongBenchScoreOptions = {}): LongBenchTaskScore {
  if (records.length === 0) throw new CommvqError(`${task.name}: no predictions to score`);
  const allClasses = records[records.length - 1].allClasses;
  const perExample = records.map((r) => scoreLongbenchExample(task, r.pred, r.answers, allClasses, options));
  let total = 0.0;
  for (const s of perExample) total += s;
  return { task: task.name, score: pyRound((100 * total) / records.length, 2), n: records.length, perExample };
}

export type LongBenchBucket = '0-4k' | '4-8k' | '8k+';
export const LONGBENCH_E_BUCKETS: readonly LongBenchBucket[] = ['0-4k', '4-8k', '8k+'];

export function longbenchBucket(length: number): LongBenchBucket {
  return length < 4000 ? '0-4k' : length < 8000 ? '4-8k' : '8k+';
}

/**
 * scorer_e(): per bucket round(100 · np.mean(scores), 2), NumPy's mean (pairwise sum) and NumPy's rounding
 * (rint(x·100)/100). An empty bucket is NaN in the reference (np.mean of []); here null.
 */
export function longbenchTaskScoreE(task: LongBenchTask, records: readonly LongBenchScoredRecord[], options: LongBenchScoreOptions = {}): Record<LongBenchBucket, number | null> {
  if (records.length === 0) throw new CommvqError(`${task.name}: no predictions to score`);
  const allClasses = records[records.length - 1].allClasses;
  const buckets: Record<LongBenchBucket, number[]> = { '0-4k': [], '4-8k': [], '8k+': [] };
  for (const r of records) buckets[longbenchBucket(r.length)].push(scoreLongbenchExample(task, r.pred, r.answers, allClasses, options));
  const out = {} as Record<LongBenchBucket, number | null>;
  for (const b of LONGBENCH_E_BUCKETS) out[b] = buckets[b].length === 0 ? null : npRound(100 * npMean(buckets[b]), 2);
  return out;
}

/**
 * The average over the tasks scored: round(mean of the task scores, 2), unweighted — the spec's "average over the
 * dataset scores present". (Whether the reference took np.mean or sum/len is not recorded; the two can differ only
 * when the mean sits within a rounding error of a 0.005 boundary. We use Python's sum/len and round.)
 */
export function longbenchAverage(taskScores: Readonly<Record<string, number>>): number {
  const values = Object.values(taskScores);
  if (values.length === 0) throw new CommvqError('no task scores to average');
  let total = 0;
  for (const v of values) total += v;
  return pyRound(total / values.length, 2);
}
