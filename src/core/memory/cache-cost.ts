/**
 * The cost of one cache setting, in one place: which byte arithmetic of cache-accounting.ts prices each kind, with
 * the kind's defaults (KIVI_DEFAULTS, INT_DEFAULTS, COMMVQ_DEFAULTS) filled in. measure-memory prices its points here
 * (cacheArithmetic) and cache-bits its average bits (cacheBytesPerToken), so the two never disagree on a number.
 *
 *   cacheBytesPerToken(g, { cache: 'int4' })                                        // 1152 at Llama-3.1-8B: group 64
 *   cacheArithmetic(g, { cache: 'kivi', bits: 2, group: 32, residual: 128 }, 32784)   // { perToken: 768, cache: ... }
 */
import { COMMVQ_DEFAULTS, INT_DEFAULTS, KIVI_DEFAULTS } from '../cache-spec.js';
import type { CompressTarget } from '../commvq/commvq-cache.js';
import type { DType } from '../tensor/dtype.js';
import {
  cacheBytes, commvqAblationBytesPerToken, denseBytesPerToken, fp8BytesPerToken, intBytesPerToken, intCacheBytes, kiviBytesPerToken, kiviCacheBytes,
  type CacheGeometry, type CommvqGeometry, type KiviGeometry,
} from './cache-accounting.js';
import type { MemoryCacheKind, MemoryPointSpec } from './memory-probe.js';

/** A cache as it is priced: measure-memory's setting, or a CacheSpec's fields (cache-bits); absent ones are the kind's defaults. */
export interface PricedCache {
  readonly cache: MemoryCacheKind;
  /** KIVI's code bits (default 2); CommVQ's come with its geometry */
  readonly bits?: number;
  readonly group?: number;
  readonly residual?: number;
  /** CommVQ's halves in codes: an ablation (keys or values) holds the other half exact */
  readonly compress?: CompressTarget;
}

/**
 * Bytes per token and layer of one sequence, keys and values, as the format stores a token (the exact recent tokens
 * apart). `commvq`: the CommVQ geometry; `exactDtype`: the width of exact rows (dense, an ablation's exact half).
 */
export function cacheBytesPerToken(g: CacheGeometry, s: PricedCache, commvq?: CommvqGeometry, exactDtype: DType = 'bf16'): number {
  switch (s.cache) {
    case 'dense':
      return denseBytesPerToken(g, exactDtype);
    case 'commvq': {
      const b = commvqAblationBytesPerToken(g, commvq!, s.compress ?? COMMVQ_DEFAULTS.compress, exactDtype);
      return b.key + b.value;
    }
    case 'kivi': {
      const b = kiviBytesPerToken(g, kiviOf(s));
      return b.key + b.value;
    }
    case 'int4':
    case 'int2':
      return intBytesPerToken(g, intBits(s.cache), intGroup(s));
    case 'fp8':
      return fp8BytesPerToken(g);
  }
}

/**
 * A point's cache by arithmetic: bytes per token and layer of one sequence (cacheBytesPerToken) and the whole cache of
 * `tokens` tokens of one sequence, all layers, its exact tokens in bf16. `commvq`: the CommVQ geometry.
 */
export function cacheArithmetic(g: CacheGeometry, s: Pick<MemoryPointSpec, 'cache' | 'bits' | 'group' | 'residual'>, tokens: number, commvq?: CommvqGeometry): { perToken: number; cache: number } {
  return { perToken: cacheBytesPerToken(g, s, commvq), cache: wholeCacheBytes(g, s, tokens, commvq) };
}

function wholeCacheBytes(g: CacheGeometry, s: PricedCache, tokens: number, commvq?: CommvqGeometry): number {
  switch (s.cache) {
    case 'dense':
      return cacheBytes(g, tokens);
    case 'commvq':
      return cacheBytes(g, tokens, commvq);
    case 'kivi':
      return kiviCacheBytes(g, tokens, kiviOf(s));
    case 'int4':
    case 'int2':
      return intCacheBytes(g, tokens, intBits(s.cache), intGroup(s), s.residual ?? INT_DEFAULTS.residual);
    case 'fp8':
      return g.numLayers * tokens * fp8BytesPerToken(g);
  }
}

function kiviOf(s: PricedCache): KiviGeometry {
  return { bits: (s.bits ?? 2) as 1 | 2, group: s.group ?? KIVI_DEFAULTS.group, residual: s.residual ?? KIVI_DEFAULTS.residual };
}

function intBits(kind: 'int4' | 'int2'): 4 | 2 {
  return kind === 'int4' ? 4 : 2;
}

function intGroup(s: PricedCache): number {
  return s.group ?? INT_DEFAULTS.group;
}
