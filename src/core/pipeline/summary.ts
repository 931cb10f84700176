import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-write.js';
import type { PipelineManifest } from './pipeline-manifest.js';
import type { StageName } from './stage.js';

/**
 * RUN_DIR/summary.json and the closing lines of `commvq pipeline`: per stage, whether this invocation ran it (or an
 * earlier one did), how long it took, one line of what it produced, its files and its key numbers.
 */
export const PIPELINE_SUMMARY_FORMAT = 'commvq.pipeline-summary';

export interface StageSummary {
  stage: StageName;
  /** ran: by this invocation; resumed: finished by an earlier one; pending: not reached (interrupted, or failed) */
  status: 'ran' | 'resumed' | 'pending';
  seconds: number | null;
  headline: string | null;
  files: string[];
  numbers: Record<string, number | string | null>;
}

export interface PipelineSummary {
  format: typeof PIPELINE_SUMMARY_FORMAT;
  version: 1;
  run_dir: string;
  model: string;
  demo: boolean;
  corpus: string;
  device: string;
  bits: number[];
  /** every stage is done */
  complete: boolean;
  interrupted: boolean;
  /** wall time of this invocation */
  seconds: number;
  stages: StageSummary[];
}

export function pipelineSummary(
  m: PipelineManifest,
  order: readonly StageName[],
  o: { runDir: string; device: string; ran: ReadonlySet<StageName>; interrupted: boolean; seconds: number },
): PipelineSummary {
  const stages = order.map((stage): StageSummary => {
    const r = m.stages[stage];
    if (!r) return { stage, status: 'pending', seconds: null, headline: null, files: [], numbers: {} };
    return { stage, status: o.ran.has(stage) ? 'ran' : 'resumed', seconds: r.seconds, headline: r.headline, files: r.files, numbers: r.numbers };
  });
  return {
    format: PIPELINE_SUMMARY_FORMAT,
    version: 1,
    run_dir: o.runDir,
    model: m.demo ? `${m.model} (the embedded demo model)` : m.model,
    demo: m.demo,
    corpus: m.generatedCorpus ? `${m.corpus} (generated)` : m.corpus,
    device: o.device,
    bits: m.settings.bits,
    complete: stages.every((s) => s.status !== 'pending'),
    interrupted: o.interrupted,
    seconds: o.seconds,
    stages,
  };
}

export function writePipelineSummary(runDir: string, s: PipelineSummary): string {
  const path = join(runDir, 'summary.json');
  writeFileAtomic(path, [Buffer.from(JSON.stringify(s, null, 1) + '\n')]);
  return path;
}

/**
 * The summary as lines for a terminal:
 *
 *   collect-kv      4.1 s  4608 tokens per layer × 2 layers in 9 windows of 512
 *                          → runs/p/kv, runs/p/manifest.json
 */
export function formatPipelineSummary(s: PipelineSummary): string[] {
  const width = Math.max(...s.stages.map((x) => x.stage.length));
  const lines = [`pipeline on ${s.model}, ${s.device}, corpus ${s.corpus}`];
  for (const x of s.stages) {
    const time = x.seconds === null ? '      -' : `${x.seconds.toFixed(1).padStart(6)} s`;
    const what = x.status === 'pending' ? 'not run' : `${x.headline}${x.status === 'resumed' ? ' (from an earlier run)' : ''}`;
    lines.push(`${x.stage.padEnd(width)} ${time}  ${what}`);
    if (x.files.length) lines.push(`${' '.repeat(width + 10)}→ ${x.files.join(', ')}`);
  }
  const state = s.complete ? 'complete' : s.interrupted ? 'interrupted: rerun with --resume to continue' : 'incomplete: rerun with --resume to continue';
  lines.push(`${state}; this invocation took ${s.seconds.toFixed(1)} s → ${join(s.run_dir, 'summary.json')}`);
  return lines;
}
