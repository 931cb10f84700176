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
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { openCacheFactory, type CacheFactory } from '../../cache-factory.js';
import { resolveCacheSpec, type CacheSpec } from '../../cache-spec.js';
import { OptionError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { loadModel } from '../../model/load-model.js';
import { disposeWeights } from '../../model/weights.js';
import type { DType } from '../../tensor/dtype.js';
import { corpusTokens } from '../perplexity/corpus-tokens.js';
import { perplexityCaches } from '../perplexity/perplexity-caches.js';
import { openPerplexityManifest } from '../perplexity/perplexity-manifest.js';
import { perplexitySummary, type PerplexitySummary } from '../perplexity/perplexity-summary.js';
import { windowMode, windowNll } from '../perplexity/window-nll.js';
import { WindowLog } from '../perplexity/window-log.js';
import { perplexityWindows } from '../perplexity/windows.js';
import type { EvalProgress } from './eval-run.js';
import { modelIdentity } from './manifest.js';

export { PERPLEXITY_PROTOCOL, perplexityTable, type PerplexityRow, type PerplexitySummary } from '../perplexity/perplexity-summary.js';

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

export interface PerplexityRunResult {
  outcome: 'complete' | 'interrupted';
  out: string;
  manifestPath: string;
  summaryPath: string;
  summary: PerplexitySummary;
}

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
    const manifest = openPerplexityManifest(manifestPath, identity, o, factories);
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

