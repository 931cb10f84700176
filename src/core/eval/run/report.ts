/**
 * Text for the commands to show: the progress detail beside the bar, and a few lines describing a finished run or
 * merge. Kept here so the three eval commands say things the same way.
 *
 *   bar.update(p.done, p.total, progressDetail(p));   // "| qasper 12ab | 1843 tok/s"
 *   for (const line of runReport(result)) this.log(line);
 */
import type { EvalProgress } from './eval-run.js';
import type { EvalRunResult } from './run-benchmark.js';
import type { SummaryBase } from './summary.js';

export function progressDetail(p: EvalProgress): string {
  return `| ${p.task} ${p.id} | ${Math.round(p.tokensPerSecond)} tok/s`;
}

/** The scores of a summary in one line: `qasper 41.2, samsum 30.1 | average 35.65`, or the NIAH mean. */
export function scoreLine(s: SummaryBase): string {
  const x = s as SummaryBase & { scores?: Record<string, number>; average?: number | null; overall?: number | null; scorer?: string };
  if (x.benchmark === 'gsm8k') {
    const g = s as SummaryBase & { accuracy: number | null; correct: number };
    return `GSM8K accuracy ${g.accuracy === null ? '-' : `${g.accuracy.toFixed(2)}%`} (${g.correct}/${s.counts.gsm8k ?? 0}) — commvq protocol: 8-shot CoT, greedy, final-number exact match`;
  }
  if (x.benchmark === 'niah') return `NIAH ${x.scorer}: mean ${x.overall === null || x.overall === undefined ? '-' : x.overall.toFixed(2)} / 10 over ${s.counts.niah ?? 0} cells`;
  const tasks = Object.entries(x.scores ?? {}).map(([t, v]) => `${t} ${v}`);
  return tasks.length === 0 ? 'no predictions yet' : `${tasks.join(', ')} | average ${x.average}`;
}

export function runReport(r: EvalRunResult<SummaryBase>): string[] {
  const done = `${r.done}/${r.total} examples${r.resumed > 0 ? ` (${r.resumed} from an earlier run)` : ''}`;
  const lines = [scoreLine(r.summary), `${done} → ${r.summaryPath}`];
  if (r.plots) lines.push(`heatmap → ${r.plots.png}, ${r.plots.svg}`);
  if (r.summary.random_weights) lines.push('random weights: the scores are noise (for timing only)');
  if (r.outcome === 'interrupted') lines.push('interrupted: run the same command again to continue');
  else if (r.summary.shard !== '0/1') lines.push(`shard ${r.summary.shard} is done; combine the shards with commvq eval merge`);
  return lines;
}
