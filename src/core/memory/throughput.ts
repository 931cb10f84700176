/**
 * Decode throughput of a measure-memory report: tokens per second at a measured point, batch × 1000 / ms per decode
 * step (a step decodes one token for every sequence of the batch), and for each cache and context the best that the
 * run measured, beside dense's best at the same context. Only points of one report are compared (one run, one
 * device): grid points and max-batch trials, each (cache, context, batch) once.
 *
 *   tokensPerSecond(64, 432);   // 148.1: 64 sequences, one token each every 432 ms
 *   throughputSummary(doc.points, doc.max_batch);
 *   // [{ cache: 'dense', context: 32768, best_tokens_per_s: 370, best_batch: 14, ..., ratio_to_dense: null },
 *   //  { cache: 'commvq-1bit', context: 32768, best_tokens_per_s: 151, best_batch: 208, ..., ratio_to_dense: 0.41 }]
 */
import type { MemoryMaxBatchEntry, MemoryReportPoint } from './memory-report.js';

/** Tokens per second of `batch` sequences decoding one token each per step of `msPerStep`; null where no step was timed. */
export function tokensPerSecond(batch: number, msPerStep: number | null | undefined): number | null {
  return msPerStep === null || msPerStep === undefined || !(msPerStep > 0) ? null : (batch * 1000) / msPerStep;
}

/** One measured (cache, context, batch) with its decode time. */
export interface ThroughputPoint {
  cache: string;
  context: number;
  batch: number;
  decode_ms_per_step: number;
  tokens_per_s: number;
}

/**
 * Every (cache, context, batch) of the report that was timed, once: the grid's points, then the max-batch trials the
 * grid does not hold (a trial at a grid point's batch reused that point's measurement). Points that did not fit, and
 * a report from the CPU, have no time and give none.
 */
export function throughputPoints(points: readonly MemoryReportPoint[], maxBatch: readonly MemoryMaxBatchEntry[]): ThroughputPoint[] {
  const out = new Map<string, ThroughputPoint>();
  const add = (cache: string, context: number, t: { batch: number; decode_ms_per_step: number | null; tokens_per_s: number | null }) => {
    const key = `${cache}/${context}/${t.batch}`;
    if (out.has(key) || t.decode_ms_per_step === null || t.tokens_per_s === null) return;
    out.set(key, { cache, context, batch: t.batch, decode_ms_per_step: t.decode_ms_per_step, tokens_per_s: t.tokens_per_s });
  };
  for (const p of points) add(p.cache, p.context, p);
  for (const e of maxBatch) for (const t of e.trials) add(e.cache, e.context, t);
  return [...out.values()];
}

/** A cache's best decode throughput at one context, over the batches the run measured. */
export interface ThroughputEntry {
  cache: string;
  context: number;
  best_tokens_per_s: number;
  best_batch: number;
  /** every batch timed at this cache and context, ascending */
  batches: number[];
  /** best_tokens_per_s ÷ dense's best at the same context in this run; null for dense, or without dense there */
  ratio_to_dense: number | null;
}

/** Per context (ascending), per cache (in report order): the best throughput measured and its ratio to dense's. */
export function throughputSummary(points: readonly MemoryReportPoint[], maxBatch: readonly MemoryMaxBatchEntry[]): ThroughputEntry[] {
  const groups = new Map<string, ThroughputPoint[]>();
  for (const p of throughputPoints(points, maxBatch)) {
    const key = `${p.context}/${p.cache}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  const best = [...groups.values()].map((g) => {
    const top = g.reduce((a, b) => (b.tokens_per_s > a.tokens_per_s ? b : a));
    return { cache: top.cache, context: top.context, best_tokens_per_s: top.tokens_per_s, best_batch: top.batch, batches: g.map((p) => p.batch).sort((a, b) => a - b) };
  });
  const contexts = [...new Set(best.map((b) => b.context))].sort((a, b) => a - b);
  return contexts.flatMap((context) => {
    const here = best.filter((b) => b.context === context);
    const dense = here.find((b) => b.cache === 'dense');
    return here.map((b) => ({ ...b, ratio_to_dense: dense && b !== dense ? b.best_tokens_per_s / dense.best_tokens_per_s : null }));
  });
}
