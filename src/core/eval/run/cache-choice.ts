/**
 * Which KV cache an evaluation runs with (§8.5, §10.1 item 3: the harness selects the cache explicitly and records
 * it in every result). `--cache` takes `KIND[:key=value,...]`; each kind is one case in the three switches below
 * (parse, describe, open), so a new cache is added here and nowhere else — the commands pass the string through.
 *
 *   const choice = parseCacheChoice('dense');
 *   const caches = openCacheFactory(model, choice);   // loads what the kind needs once per run
 *   const cache = caches.make(promptIds.length + maxNewTokens);
 *   manifest.cache = caches.description;              // { mode: 'dense', bits: 32, prefill: 'exact', ... }
 */
import { createCommvqCache, loadCommvqCodebooks } from '../../commvq/load-commvq.js';
import { CommvqError } from '../../errors.js';
import type { KVCache } from '../../model/kv-cache.js';
import type { LlamaModel } from '../../model/llama.js';
import { bytesPerElement } from '../../tensor/dtype.js';

/** One variant per cache kind. */
export type CacheChoice =
  | { kind: 'dense'; chunk?: number }
  | { kind: 'commvq'; key: string; value: string; prefill: 'faithful' | 'strict'; encoding: 'argmax' | 'gumbel'; seed: number; chunk?: number };

/** The kinds `--cache` accepts, for help text and errors. */
export const CACHE_KINDS: readonly CacheChoice['kind'][] = ['dense', 'commvq'];

/** Help text of the `--cache` flag, shared by the eval commands. */
export const CACHE_FLAG_HELP =
  `KV cache: KIND[:key=value,...], KIND one of ${CACHE_KINDS.join(', ')}; dense[:chunk=N], ` +
  'commvq:key=KEY.arrow,value=VALUE.arrow[,prefill=faithful|strict][,encoding=argmax|gumbel][,seed=N][,chunk=N] ' +
  '(chunk: prompt tokens per forward, which bounds the prompt’s activations; CommVQ needs prefill=strict for it)';

/** What a result records about its cache: enough to tell two runs apart and to reproduce one. */
export interface CacheDescription {
  /** the kind, e.g. 'dense' */
  mode: string;
  /** a short name for file names and plot titles, e.g. 'dense' or 'commvq-2bit' */
  label: string;
  /** bits per stored K/V value: the activation dtype's width for dense, the code bits for a quantized cache */
  bits: number;
  /** the dtype exact keys and values are held in */
  kv_dtype: string;
  /** how the prompt's own attention is computed: 'exact' (dense), 'faithful' or 'strict' (§10.1 item 1) */
  prefill: string;
  /** codebook files or folders, null for dense */
  codebooks: { key: string; value: string } | null;
  /** value-code encoding: null for dense, 'argmax' or 'gumbel' (§10.1 item 2) */
  value_encoding: string | null;
  /** the seed of any randomness in the cache (gumbel encoding), null where there is none */
  seed: number | null;
  /** prompt tokens per forward, present only when the prompt runs in chunks (older manifests lack it alike) */
  prefill_chunk?: number;
}

/** Splits `KIND[:key=value,...]`; a malformed option is an error naming it. */
export function parseCacheSpec(spec: string): { kind: string; options: Record<string, string> } {
  const [kind, rest] = splitOnce(spec.trim(), ':');
  const options: Record<string, string> = {};
  for (const part of rest === undefined ? [] : rest.split(',')) {
    const [key, value] = splitOnce(part.trim(), '=');
    if (!key || value === undefined || value === '') throw new CommvqError(`--cache ${spec}: '${part}' is not key=value`);
    options[key] = value;
  }
  return { kind, options };
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

/**
 * Parses a `--cache` value.
 *
 *   parseCacheChoice('dense')  // { kind: 'dense' }
 *   parseCacheChoice('commvq:key=k.arrow,value=v.arrow,prefill=strict')
 */
export function parseCacheChoice(spec: string): CacheChoice {
  const { kind, options } = parseCacheSpec(spec);
  const extra = Object.keys(options);
  switch (kind) {
    case 'dense': {
      const unknown = extra.filter((k) => k !== 'chunk');
      if (unknown.length > 0) throw new CommvqError(`--cache dense takes only chunk=N (got ${unknown.join(', ')})`);
      return { kind: 'dense', ...chunkOption(spec, options) };
    }
    case 'commvq': {
      const unknown = extra.filter((k) => !['key', 'value', 'prefill', 'encoding', 'seed', 'chunk'].includes(k));
      if (unknown.length > 0) throw new CommvqError(`--cache commvq: unknown option ${unknown.join(', ')} (key, value, prefill, encoding, seed, chunk)`);
      if (!options.key || !options.value) throw new CommvqError('--cache commvq needs key=KEY_CODEBOOK and value=VALUE_CODEBOOK', 'train them with commvq train-key and commvq train-value');
      const prefill = options.prefill ?? 'faithful';
      const encoding = options.encoding ?? 'argmax';
      if (prefill !== 'faithful' && prefill !== 'strict') throw new CommvqError(`--cache commvq: prefill must be faithful or strict, not ${prefill}`);
      if (encoding !== 'argmax' && encoding !== 'gumbel') throw new CommvqError(`--cache commvq: encoding must be argmax or gumbel, not ${encoding}`);
      const chunk = chunkOption(spec, options);
      if (chunk.chunk && prefill === 'faithful') throw new CommvqError(`--cache ${spec}: chunk needs prefill=strict`, 'faithful prefill attends exactly over the whole prompt, in one forward');
      return { kind: 'commvq', key: options.key, value: options.value, prefill, encoding, seed: Number(options.seed ?? 42), ...chunk };
    }
    default:
      throw new CommvqError(`unknown cache '${kind}'`, `--cache takes one of: ${CACHE_KINDS.join(', ')}`);
  }
}

/** `chunk=N`: a whole number of tokens ≥ 1, or nothing. */
function chunkOption(spec: string, options: Record<string, string>): { chunk?: number } {
  if (options.chunk === undefined) return {};
  const chunk = /^\d+$/.test(options.chunk) ? Number(options.chunk) : 0;
  if (chunk < 1) throw new CommvqError(`--cache ${spec}: chunk must be a whole number of tokens ≥ 1, not ${options.chunk}`);
  return { chunk };
}

/** The manifest's description of a cache on this model (the dense cache holds the backend's activation dtype). */
export function describeCache(choice: CacheChoice, model: LlamaModel): CacheDescription {
  return { ...describeKind(choice, model), ...(choice.chunk ? { prefill_chunk: choice.chunk } : {}) };
}

function describeKind(choice: CacheChoice, model: LlamaModel): CacheDescription {
  switch (choice.kind) {
    case 'dense': {
      const dtype = model.backend.activationDType;
      return { mode: 'dense', label: 'dense', bits: 8 * bytesPerElement(dtype), kv_dtype: dtype, prefill: 'exact', codebooks: null, value_encoding: null, seed: null };
    }
    case 'commvq':
      return {
        mode: 'commvq', label: 'commvq', bits: 0, kv_dtype: model.backend.activationDType, prefill: choice.prefill,
        codebooks: { key: choice.key, value: choice.value }, value_encoding: choice.encoding, seed: choice.encoding === 'gumbel' ? choice.seed : null,
      };
  }
}

/** Makes one cache per example; owns whatever the kind loads once per run (codebooks), released by dispose. */
export interface CacheFactory {
  readonly description: CacheDescription;
  /** an empty cache with room for `capacity` tokens; the caller disposes it */
  make(capacity: number): KVCache;
  dispose(): void;
}

export function openCacheFactory(model: LlamaModel, choice: CacheChoice): CacheFactory {
  const description = describeCache(choice, model);
  switch (choice.kind) {
    case 'dense':
      return { description, make: (capacity) => model.createDenseCache(capacity), dispose() {} };
    case 'commvq': {
      const books = loadCommvqCodebooks(model, choice.key, choice.value);
      const bits = books.bits.value;
      const valueEncoding = choice.encoding === 'gumbel' ? { gumbelSeed: choice.seed } : ('argmax' as const);
      return {
        description: { ...description, label: `commvq-${bits}bit`, bits },
        make: (capacity) => createCommvqCache(model, books, { capacity, prefill: choice.prefill, valueEncoding }),
        dispose() {},
      };
    }
  }
}
