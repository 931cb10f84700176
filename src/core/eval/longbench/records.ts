/**
 * LongBench prediction records (one JSON line per example, the reference's `{"pred", "answers", "all_classes",
 * "length"}` plus id, index and task) and the scoring of a set of them: per task, the average, and the LongBench-E
 * buckets.
 *
 *   log.append(longbenchRecord(task, example, pred));
 *   const report = scoreLongbenchRecords(log.records());   // { tasks: { qasper: 41.27, ... }, average: 40.1 }
 */
import { CommvqError } from '../../errors.js';
import type { PredictionRecord } from '../predictions.js';
import type { LongBenchExample } from './data.js';
import { longbenchAverage, longbenchTaskScore, longbenchTaskScoreE, type LongBenchBucket, type LongBenchScoredRecord, type LongBenchScoreOptions } from './score.js';
import { longbenchTask, type LongBenchTask } from './tasks.js';

export interface LongBenchRecord extends PredictionRecord {
  answers: string[];
  all_classes: string[] | null;
  length: number;
}

export function longbenchRecord(task: LongBenchTask, example: LongBenchExample, pred: string): LongBenchRecord {
  return { id: example.id, index: example.index, task: task.name, pred, answers: example.answers, all_classes: example.allClasses, length: example.length };
}

function scored(r: PredictionRecord): LongBenchScoredRecord {
  const answers = r.answers;
  if (!Array.isArray(answers) || !answers.every((a) => typeof a === 'string')) throw new CommvqError(`${r.task} example ${r.id}: the record has no "answers" list`);
  const classes = r.all_classes ?? null;
  if (classes !== null && !(Array.isArray(classes) && classes.every((c) => typeof c === 'string'))) throw new CommvqError(`${r.task} example ${r.id}: "all_classes" must be a list or null`);
  if (typeof r.length !== 'number') throw new CommvqError(`${r.task} example ${r.id}: the record has no "length"`);
  return { pred: r.pred, answers, allClasses: classes as string[] | null, length: r.length };
}

export interface LongBenchReport {
  /** task → round(100 · mean, 2) */
  tasks: Record<string, number>;
  /** examples scored per task */
  counts: Record<string, number>;
  /** over the tasks present, unweighted */
  average: number;
  /** LongBench-E: task → bucket → score (null for an empty bucket) */
  buckets?: Record<string, Record<LongBenchBucket, number | null>>;
}

/** Scores records of any number of tasks, each task's records in dataset order. */
export function scoreLongbenchRecords(records: readonly PredictionRecord[], options: LongBenchScoreOptions & { e?: boolean } = {}): LongBenchReport {
  const byTask = new Map<string, PredictionRecord[]>();
  for (const r of records) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  const tasks: Record<string, number> = {};
  const counts: Record<string, number> = {};
  const buckets: Record<string, Record<LongBenchBucket, number | null>> = {};
  for (const [name, rs] of byTask) {
    const task = longbenchTask(name);
    const ordered = [...rs].sort((a, b) => a.index - b.index).map(scored);
    tasks[name] = longbenchTaskScore(task, ordered, options).score;
    counts[name] = ordered.length;
    if (options.e) buckets[name] = longbenchTaskScoreE(task, ordered, options);
  }
  return { tasks, counts, average: longbenchAverage(tasks), ...(options.e ? { buckets } : {}) };
}
