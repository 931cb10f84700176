/**
 * The frame of the three runners: open the model with the chosen cache, let the benchmark check its inputs and
 * build its tasks, open (or resume) the run folder, run, and write the summary — also after a failure, so the
 * scores of the finished examples are never lost with the run.
 *
 *   return runBenchmark(options, { benchmark: 'longbench', dataDir, prepare: (session) => ({ ... }), summarize: longbenchSummary });
 */
import type { Backend } from '../../backend/backend.js';
import type { DType } from '../../tensor/dtype.js';
import type { PredictionRecord } from '../predictions.js';
import { WHOLE, type Shard } from '../shard.js';
import type { CacheSpec } from '../../cache-spec.js';
import { EvalRun, type EvalProgress, type EvalTask, type ExecuteOutcome } from './eval-run.js';
import type { Benchmark, EvalManifest } from './manifest.js';
import { EvalSession } from './session.js';
import { writeSummary, type SummaryBase } from './summary.js';

/** Options every runner takes. */
export interface EvalRunOptions {
  modelDir: string;
  out: string;
  backend: Backend;
  /** default dense */
  cache?: CacheSpec;
  shard?: Shard;
  /** the first N examples of each task (NIAH: the first N cells) */
  limit?: number;
  dtype?: DType;
  /** seeded random weights from config.json, no checkpoint (EvalSession's randomWeights): for timing at real sizes */
  randomWeights?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite); non-finite logits are still refused */
  allowNonFinite?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: EvalProgress) => void;
  onLoadProgress?: (done: number, total: number) => void;
}

export interface EvalRunResult<S extends SummaryBase> extends ExecuteOutcome {
  out: string;
  manifestPath: string;
  summaryPath: string;
  summary: S;
  /** the heatmap files (NIAH) */
  plots?: { svg: string; png: string };
}

export interface PreparedBenchmark<E extends { id: string }> {
  tasks: EvalTask<E>[];
  protocol: Record<string, unknown>;
  settings: Record<string, unknown>;
  /** the settings that decide which examples exist (EvalRunSetup.planSettings) */
  planSettings?: readonly string[];
  departures: readonly string[];
}

export interface BenchmarkSpec<E extends { id: string }, S extends SummaryBase> {
  benchmark: Benchmark;
  dataDir: string | null;
  /** checks the inputs against the model and builds the tasks; nothing is written before it returns */
  prepare(session: EvalSession): PreparedBenchmark<E>;
  summarize(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): S;
  /** extra outputs from the summary (the NIAH heatmap) */
  after?(run: EvalRun, summary: S): Promise<{ svg: string; png: string } | undefined>;
}

export async function runBenchmark<E extends { id: string }, S extends SummaryBase>(o: EvalRunOptions, spec: BenchmarkSpec<E, S>): Promise<EvalRunResult<S>> {
  const session = EvalSession.open({
    modelDir: o.modelDir, backend: o.backend, cache: o.cache ?? { kind: 'dense' }, dtype: o.dtype, randomWeights: o.randomWeights,
    allowNonFinite: o.allowNonFinite, onLoadProgress: o.onLoadProgress,
  });
  try {
    const prepared = spec.prepare(session);
    const shard = o.shard ?? WHOLE;
    const run = EvalRun.open({
      out: o.out,
      shard,
      limit: o.limit,
      device: o.backend.device,
      identity: { benchmark: spec.benchmark, model: session.identity, cache: session.caches.description, protocol: prepared.protocol },
      manifest: { model_dir: o.modelDir, data_dir: spec.dataDir, tasks: prepared.tasks.map((t) => t.name), settings: prepared.settings, departures: prepared.departures },
      planSettings: prepared.planSettings,
    });
    // complete: every example this invocation planned has its prediction (counts alone would also count cells
    // or examples left in the folder by an earlier, different selection)
    const summarize = (complete: boolean) => {
      const summary = { ...spec.summarize(run.manifest, run.records(), run.manifest.planned), complete };
      writeSummary(run.paths.summary, summary);
      return summary;
    };
    let outcome: ExecuteOutcome;
    try {
      outcome = await run.execute(prepared.tasks, { signal: o.signal, onProgress: o.onProgress });
    } catch (err) {
      run.fail(err);
      try {
        summarize(false);
      } catch {
        // the run's own error is the one to report
      }
      throw err;
    }
    const summary = summarize(outcome.done === outcome.total);
    const plots = await spec.after?.(run, summary);
    return { ...outcome, out: o.out, manifestPath: run.paths.manifest, summaryPath: run.paths.summary, summary, ...(plots ? { plots } : {}) };
  } finally {
    session.dispose();
  }
}
