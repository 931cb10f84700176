/**
 * A CacheSpec turned into caches: what the kind needs is loaded once (CommVQ codebooks), then `make` gives a fresh
 * cache per prompt. The description is what results record about the cache (eval manifests compare it to resume a
 * run, so its fields for a given choice never change).
 *
 *   const caches = openCacheFactory(model, { kind: 'commvq', bits: 1, run: 'runs/a' });
 *   const cache = caches.make(promptIds.length + maxNewTokens);
 *   manifest.cache = caches.description;   // { mode: 'commvq', label: 'commvq-1bit', bits: 1, prefill: 'faithful', ... }
 *
 * With random weights (`{ random: true }`), a CommVQ spec of bits alone means seeded random codebooks
 * (random-codebooks.ts), described as such: `codebooks: null, random_codebooks: true`, label `commvq-1bit-random`.
 * An ablation (`compress=keys` or `values`) adds `compress` and a label suffix, `commvq-1bit-keys-only`.
 */
import { COMMVQ_DEFAULTS, resolveCacheSpec, type CacheSpec, type CommvqCacheSpec } from './cache-spec.js';
import { refuseAblationOnDevice } from './commvq/commvq-cache.js';
import { createCommvqCache, loadSpecCodebooks } from './commvq/load-commvq.js';
import { disposeCodebookValues, randomCodebooks } from './commvq/random-codebooks.js';
import { peerCacheFactory } from './peers/peer-factory.js';
import type { KVCache } from './model/kv-cache.js';
import type { LlamaModel } from './model/llama.js';
import { openKiviFactory } from './peers/kivi-factory.js';
import { bytesPerElement } from './tensor/dtype.js';

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
  /** codebook files; null for dense, and for random codebooks (random_codebooks) */
  codebooks: { key: string; value: string } | null;
  /** present, true, only where the CommVQ codebooks were drawn at random (with random weights), never trained */
  random_codebooks?: true;
  /** value-code encoding: null for dense, 'argmax' or 'gumbel' (§10.1 item 2) */
  value_encoding: string | null;
  /** the seed of any randomness in the cache (gumbel encoding), null where there is none */
  seed: number | null;
  /** prompt tokens per forward, present only when the prompt runs in chunks (older manifests lack it alike) */
  prefill_chunk?: number;
  /** channels per quantization group, present only for caches quantized in groups (int4, int2) */
  group?: number;
  /** tokens held exact before a flush quantizes them, present only for caches that hold some (int4, int2) */
  residual?: number;
  /** CommVQ's half in codes, present only for an ablation (keys or values alone): CommVQ's own manifests lack it */
  compress?: 'keys' | 'values';
}

/** Makes caches of one spec; owns whatever the kind loads once (codebooks), released by dispose. */
export interface CacheFactory {
  readonly description: CacheDescription;
  /** an empty cache with room for `capacity` tokens of each of `batch` sequences (default 1); the caller disposes it */
  make(capacity: number, batch?: number): KVCache;
  dispose(): void;
}

/**
 * Checks the spec, finds and loads its codebooks (refusing files of another bit width than `bits` asks for), and
 * returns the factory. With `random` (set only with random weights, whose outputs are noise anyway), a CommVQ spec
 * that gives only `bits` gets seeded random codebooks of that width; without it, such a spec is refused.
 *
 *   const caches = openCacheFactory(model, { kind: 'dense', chunk: 4096 });   // description.prefill_chunk 4096
 *   openCacheFactory(model, { kind: 'commvq', bits: 1 }, { random: true }).description.random_codebooks   // true
 */
export function openCacheFactory(model: LlamaModel, spec: CacheSpec, o: { random?: boolean } = {}): CacheFactory {
  const resolved = resolveCacheSpec(spec, o);
  if (resolved.kind === 'kivi') return openKiviFactory(model, resolved);
  if (resolved.kind === 'int4' || resolved.kind === 'int2' || resolved.kind === 'fp8') return peerCacheFactory(model, resolved);
  const chunk = resolved.chunk ? { prefill_chunk: resolved.chunk } : {};
  if (resolved.kind === 'dense') {
    const dtype = model.backend.activationDType;
    const description = { mode: 'dense', label: 'dense', bits: 8 * bytesPerElement(dtype), kv_dtype: dtype, prefill: 'exact', codebooks: null, value_encoding: null, seed: null, ...chunk };
    return { description, make: (capacity, batch) => model.createDenseCache(capacity, batch), dispose() {} };
  }
  const compress = resolved.compress ?? COMMVQ_DEFAULTS.compress;
  refuseAblationOnDevice(compress, model.backend.device); // before loading codebooks
  const ablation = compress === 'both' ? {} : { compress };
  // resolveCacheSpec leaves a spec without key= only where `random` allows random codebooks of its bits
  const random = resolved.key === undefined;
  const books = random ? randomCodebooks(model, resolved.bits!, { values: 'host' }) : loadSpecCodebooks(model, { key: resolved.key!, value: resolved.value!, bits: resolved.bits });
  const { prefill, encoding, seed } = { ...COMMVQ_DEFAULTS, ...definedOnly(resolved) };
  const bits = books.bits.value;
  const description: CacheDescription = {
    mode: 'commvq', label: `commvq-${bits}bit${random ? '-random' : ''}${compress === 'both' ? '' : `-${compress}-only`}`, bits, kv_dtype: model.backend.activationDType, prefill,
    codebooks: random ? null : { key: resolved.key!, value: resolved.value! }, ...(random ? { random_codebooks: true as const } : {}),
    value_encoding: encoding, seed: encoding === 'gumbel' ? seed : null, ...chunk, ...ablation,
  };
  const valueEncoding = encoding === 'gumbel' ? { gumbelSeed: seed } : ('argmax' as const);
  return {
    description,
    make: (capacity, batch) => createCommvqCache(model, books, { capacity, prefill, valueEncoding, ...ablation, ...(batch === undefined ? {} : { batch }) }),
    dispose() {
      if (random) disposeCodebookValues(books); // loaded codebooks are host arrays the collector takes
    },
  };
}

/** The spec's options that are set (an explicit undefined must not hide a default). */
function definedOnly(spec: CommvqCacheSpec): Partial<CommvqCacheSpec> {
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined));
}
