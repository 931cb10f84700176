/**
 * `commvq eval perplexity`: teacher-forced perplexity of a corpus through one or more caches, in one run over one
 * model load. The corpus becomes one token stream (corpus-tokens.ts), cut into windows of `context` tokens every
 * `stride` (windows.ts, Hugging Face's sliding-window recipe); each window runs on a fresh cache where every position
 * attends as in decoding (window-nll.ts), and its NLL sum is logged per cache (resumable). The summary is one table:
 * per cache, exp(Σ NLL / Σ tokens) over the windows done.
 *
 *   const r = await runPerplexity({ modelDir, out: 'runs/ppl', backend, data: 'fineweb.parquet', context: 4096, caches: [{ kind: 'dense' }, commvq1] });
 *   r.summary.rows   // [{ cache: 'dense', perplexity: 9.81, ... }, { cache: 'commvq-1bit', perplexity: 10.7, ... }]
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { openCacheFactory, type CacheDescription, type CacheFactory } from '../../cache-factory.js';
import { resolveCacheSpec, type CacheSpec } from '../../cache-spec.js';
import { CommvqError, OptionError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { loadModel } from '../../model/load-model.js';
import { disposeWeights } from '../../model/weights.js';
import type { DType } from '../../tensor/dtype.js';
import { corpusTokens } from '../perplexity/corpus-tokens.js';
import { perplexityOf } from '../perplexity/nll.js';
import { perplexityCaches } from '../perplexity/perplexity-caches.js';
import { windowMode, windowNll, type WindowMode } from '../perplexity/window-nll.js';
import { WindowLog } from '../perplexity/window-log.js';
import { perplexityWindows } from '../perplexity/windows.js';
import type { EvalProgress } from './eval-run.js';
import { evalVersions, firstDifference, modelIdentity, type ModelIdentity } from './manifest.js';

export const PERPLEXITY_FORMAT = 'commvq.perplexity';

export interface PerplexityRunOptions {
  modelDir: string;
  out: string;
  backend: Backend;
  /** the corpus: JSON lines, Parquet, Arrow, a folder of .txt files, or one .txt file */
  data: string;
  /** the text field of records (default `text`) */
  field?: string;
  /** tokens per window */
  context: number;
  /** tokens between window starts (default context: disjoint windows) */
  stride?: number;
  /** score only the corpus's first N tokens */
  maxTokens?: number;
  /** default [dense] */
  caches?: readonly CacheSpec[];
  dtype?: DType;
  randomWeights?: boolean;
  allowNonFinite?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: EvalProgress) => void;
}

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

export interface PerplexityRunResult {
  outcome: 'complete' | 'interrupted';
  out: string;
  manifestPath: string;
  summaryPath: string;
  summary: PerplexitySummary;
}

interface PerplexityManifest {
  format: typeof PERPLEXITY_FORMAT;
  version: 1;
  /** what must be equal for a rerun to continue the folder */
  identity: { model: ModelIdentity; corpus: { tokens: number; hash: string; field: string }; context: number; stride: number };
  model_dir: string;
  data: string;
  /** label → description of every cache scored into this folder */
  caches: Record<string, CacheDescription>;
  versions: Record<string, string>;
}

export const PERPLEXITY_PROTOCOL =
  'commvq protocol: teacher-forced, sliding windows (Hugging Face recipe), every position attending as in decoding (strict rule)';

export async function runPerplexity(o: PerplexityRunOptions): Promise<PerplexityRunResult> {
  const specs = perplexityCaches(o.caches ?? [{ kind: 'dense' }]);
  const random = { random: o.randomWeights ?? false };
  specs.forEach((s) => resolveCacheSpec(s, random)); // a missing codebook is refused before the weights load
  const loaded = loadModel(o.modelDir, { backend: o.backend, dtype: o.dtype, randomWeights: o.randomWeights, allowNonFinite: o.allowNonFinite });
  const factories: CacheFactory[] = [];
  try {
    const context = loaded.config.maxPositionEmbeddings;
    if (o.context > context) throw new OptionError('context', String(o.context), `longer than the model's context of ${context} tokens (max_position_embeddings)`);
    const stride = o.stride ?? o.context;
    const stream = await corpusTokens(o.data, loaded.tokenizer, { field: o.field, maxTokens: o.maxTokens });
    const windows = perplexityWindows(stream.ids.length, o.context, stride);
    for (const s of specs) factories.push(openCacheFactory(loaded.model, s, random));
    factories.forEach((f) => windowMode(f));
    const labels = factories.map((f) => f.description.label);
    const twice = labels.find((l, i) => labels.indexOf(l) !== i);
    if (twice) throw new OptionError('cache', undefined, `two caches are both ${twice}: one run scores each cache once`);

    const identity = { model: modelIdentity(o.modelDir, loaded.config, { randomWeights: o.randomWeights }), corpus: { tokens: stream.ids.length, hash: stream.hash, field: o.field ?? 'text' }, context: o.context, stride };
    const manifestPath = join(o.out, 'manifest.json');
    const manifest = openManifest(manifestPath, identity, o, factories);
    mkdirSync(join(o.out, 'windows'), { recursive: true });
    const logs = factories.map((f) => WindowLog.open(join(o.out, 'windows', `${f.description.label}.jsonl`)));

    const total = windows.length * factories.length;
    let done = logs.reduce((a, log) => a + windows.filter((w) => log.has(w.index)).length, 0);
    let outcome: PerplexityRunResult['outcome'] = 'complete';
    const t0 = performance.now();
    let tokens = 0;
    run: for (const [c, caches] of factories.entries()) {
      for (const w of windows) {
        if (logs[c]!.has(w.index)) continue;
        await new Promise<void>((r) => setImmediate(r)); // lets a Ctrl-C reach the signal between windows
        if (o.signal?.aborted) {
          outcome = 'interrupted';
          break run;
        }
        const n = windowNll(loaded.model, caches, stream.ids.subarray(w.begin, w.end), w.scoreFrom);
        logs[c]!.append({ window: w.index, begin: w.begin, end: w.end, count: n.count, nll: n.sum });
        done++;
        tokens += w.end - w.begin;
        const seconds = (performance.now() - t0) / 1000;
        o.onProgress?.({ done, total, task: caches.description.label, id: `window-${w.index}`, promptTokens: w.end - w.begin, newTokens: 0, tokensPerSecond: tokens / Math.max(seconds, 1e-9) });
      }
    }
    const summary = perplexitySummary(manifest, factories, logs, windows.length);
    const summaryPath = join(o.out, 'summary.json');
    writeFileAtomic(summaryPath, [Buffer.from(JSON.stringify(summary, null, 1) + '\n')]);
    return { outcome, out: o.out, manifestPath, summaryPath, summary };
  } finally {
    factories.forEach((f) => f.dispose());
    disposeWeights(loaded.model.weights);
  }
}

/** Checks a folder's earlier manifest (same model, corpus tokens, context, stride; a cache label keeps its description) and writes the new one. */
function openManifest(path: string, identity: PerplexityManifest['identity'], o: PerplexityRunOptions, factories: readonly CacheFactory[]): PerplexityManifest {
  let caches: Record<string, CacheDescription> = {};
  if (existsSync(path)) {
    const found = JSON.parse(readFileSync(path, 'utf8')) as PerplexityManifest;
    if (found?.format !== PERPLEXITY_FORMAT) throw new CommvqError(`${path}: not a perplexity run's manifest`, 'use another --out folder');
    const show = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(v));
    const hint = 'rerun with the settings of that run to resume it, or use another --out folder';
    const d = firstDifference(found.identity, identity);
    if (d) throw new CommvqError(`${path} is a different run: ${d.path} is ${show(d.a)} there, ${show(d.b)} here`, hint);
    for (const f of factories) {
      const had = found.caches[f.description.label];
      const dc = had && firstDifference(had, f.description);
      if (dc) throw new CommvqError(`${path}: cache ${f.description.label} was scored with ${dc.path} ${show(dc.a)}, here ${show(dc.b)}`, hint);
    }
    caches = found.caches;
  }
  const manifest: PerplexityManifest = {
    format: PERPLEXITY_FORMAT,
    version: 1,
    identity,
    model_dir: o.modelDir,
    data: o.data,
    caches: { ...caches, ...Object.fromEntries(factories.map((f) => [f.description.label, f.description])) },
    versions: evalVersions(),
  };
  mkdirSync(o.out, { recursive: true });
  writeFileAtomic(path, [Buffer.from(JSON.stringify(manifest, null, 1) + '\n')]);
  return manifest;
}

function perplexitySummary(m: PerplexityManifest, factories: readonly CacheFactory[], logs: readonly WindowLog[], windows: number): PerplexitySummary {
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
