/**
 * The summary of a perplexity run (OUT/summary.json) and the table the command prints: per cache, exp(Σ NLL / Σ tokens)
 * over the windows its log holds, recomputed from the logs every time (a resume never disagrees with them).
 *
 *   const s = perplexitySummary(manifest, factories, logs, windows.length);
 *   perplexityTable(s)   // ['perplexity over 1000000 tokens, ...', 'cache  perplexity  scored', 'dense  9.8123 ...']
 */
import type { CacheFactory } from '../../cache-factory.js';
import { perplexityOf } from './nll.js';
import { PERPLEXITY_FORMAT, type PerplexityManifest } from './perplexity-manifest.js';
import { windowMode, type WindowMode } from './window-nll.js';
import type { WindowLog } from './window-log.js';

export const PERPLEXITY_PROTOCOL =
  'commvq protocol: teacher-forced, sliding windows (Hugging Face recipe), every position attending as in decoding (strict rule)';

export interface PerplexityRow {
  cache: string;
  /** how windows ran: one prefill (dense, CommVQ strict) or one decode step per token (other caches) */
  mode: WindowMode;
  perplexity: number | null;
  /** Σ NLL / Σ tokens (natural log) */
  mean_nll: number | null;
  tokens_scored: number;
  windows: number;
  complete: boolean;
}

export interface PerplexitySummary {
  format: typeof PERPLEXITY_FORMAT;
  version: 1;
  benchmark: 'perplexity';
  /** says what this is: our protocol, not a published harness */
  protocol: string;
  model: string;
  context: number;
  stride: number;
  corpus_tokens: number;
  windows: number;
  rows: PerplexityRow[];
  random_weights?: true;
}

export function perplexitySummary(m: PerplexityManifest, factories: readonly CacheFactory[], logs: readonly WindowLog[], windows: number): PerplexitySummary {
  const rows = factories.map((f, i): PerplexityRow => {
    const records = logs[i]!.records().filter((r) => r.window < windows);
    const n = records.reduce((a, r) => ({ sum: a.sum + r.nll, count: a.count + r.count }), { sum: 0, count: 0 });
    const ppl = perplexityOf(n);
    return { cache: f.description.label, mode: windowMode(f), perplexity: ppl, mean_nll: n.count === 0 ? null : n.sum / n.count, tokens_scored: n.count, windows: records.length, complete: records.length === windows };
  });
  return {
    format: PERPLEXITY_FORMAT, version: 1, benchmark: 'perplexity', protocol: PERPLEXITY_PROTOCOL, model: m.identity.model.name, context: m.identity.context, stride: m.identity.stride,
    corpus_tokens: m.identity.corpus.tokens, windows, rows, ...(m.identity.model.random_weights ? { random_weights: true as const } : {}),
  };
}

/** The table the command prints: one row per cache. */
export function perplexityTable(s: PerplexitySummary): string[] {
  const head = `perplexity over ${s.corpus_tokens} tokens, ${s.windows} windows of ${s.context} (stride ${s.stride}) — ${s.protocol}`;
  const width = Math.max(5, ...s.rows.map((r) => r.cache.length));
  const lines = s.rows.map((r) => `${r.cache.padEnd(width)}  ${r.perplexity === null ? '-'.padStart(10) : r.perplexity.toFixed(4).padStart(10)}  ${String(r.tokens_scored).padStart(9)} tokens  ${r.windows}/${s.windows} windows${r.complete ? '' : ' (partial)'}`);
  return [head, `${'cache'.padEnd(width)}  ${'perplexity'.padStart(10)}  ${'scored'.padStart(9)}`, ...lines];
}
