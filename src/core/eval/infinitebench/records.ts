/**
 * InfiniteBench prediction records (the reference's `{"id", "prediction", "ground_truth"}` as id, pred,
 * ground_truth, plus index and task) and their scoring: the mean per task in [0, 1] as compute_scores.py prints it,
 * and ×100 with the average over the tasks present (the paper's table; the reference prints no average).
 *
 *   log.append(infinitebenchRecord(task, example, pred));
 *   const report = scoreInfinitebenchRecords(log.records());
 */
import { CommvqError } from '../../errors.js';
import type { PredictionRecord } from '../predictions.js';
import { pyRound } from '../py.js';
import type { InfiniteBenchAnswer, InfiniteBenchExample } from './data.js';
import { infinitebenchGroundTruth } from './prompt.js';
import { infinitebenchTaskScore } from './score.js';
import { infinitebenchTask, type InfiniteBenchTask } from './tasks.js';

export interface InfiniteBenchRecord extends PredictionRecord {
  ground_truth: InfiniteBenchAnswer;
}

export function infinitebenchRecord(task: InfiniteBenchTask, example: InfiniteBenchExample, pred: string): InfiniteBenchRecord {
  return { id: example.id, index: example.index, task: task.name, pred, ground_truth: infinitebenchGroundTruth(task, example) };
}

export interface InfiniteBenchReport {
  /** task → mean in [0, 1] */
  means: Record<string, number>;
  /** task → round(100 · mean, 2) */
  tasks: Record<string, number>;
  counts: Record<string, number>;
  /** round(mean of the ×100 task scores, 2) over the tasks present */
  average: number;
}

export function scoreInfinitebenchRecords(records: readonly PredictionRecord[]): InfiniteBenchReport {
  const byTask = new Map<string, PredictionRecord[]>();
  for (const r of records) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  if (byTask.size === 0) throw new CommvqError('no InfiniteBench predictions to score');
  const means: Record<string, number> = {};
  const tasks: Record<string, number> = {};
  const counts: Record<string, number> = {};
  for (const [name, rs] of byTask) {
    infinitebenchTask(name);
    const ordered = [...rs].sort((a, b) => a.index - b.index);
    for (const r of ordered) if (r.ground_truth === undefined) throw new CommvqError(`${name} example ${r.id}: the record has no "ground_truth"`);
    const s = infinitebenchTaskScore(
      name,
      ordered.map((r) => ({ pred: r.pred, groundTruth: r.ground_truth as InfiniteBenchAnswer })),
    );
    means[name] = s.mean;
    tasks[name] = pyRound(100 * s.mean, 2);
    counts[name] = s.n;
  }
  const values = Object.values(tasks);
  return { means, tasks, counts, average: pyRound(values.reduce((a, v) => a + v, 0) / values.length, 2) };
}
