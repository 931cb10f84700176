/**
 * The factory of KIVI caches (cache-factory.ts hands a `kivi` spec here): the description results record, and fresh
 * caches per prompt. Only the CPU reference exists, so another device is refused in one line naming the kind.
 *
 *   const caches = openKiviFactory(model, { kind: 'kivi', bits: 2 });
 *   caches.description.label   // 'kivi-2bit-g32-r128'
 *   const cache = caches.make(promptIds.length + maxNewTokens);
 */
import type { CacheDescription, CacheFactory } from '../cache-factory.js';
import { KIVI_DEFAULTS, type KiviCacheSpec } from '../cache-spec.js';
import { CommvqError } from '../errors.js';
import type { LlamaModel } from '../model/llama.js';
import { KiviCache } from './kivi-cache.js';

/** KIVI caches of a checked spec (checkCacheSpec) for `model`, on the CPU backend. */
export function openKiviFactory(model: LlamaModel, spec: KiviCacheSpec): CacheFactory {
  const bits = spec.bits!;
  const group = spec.group ?? KIVI_DEFAULTS.group;
  const residual = spec.residual ?? KIVI_DEFAULTS.residual;
  const label = `kivi-${bits}bit-g${group}-r${residual}`;
  if (model.backend.device !== 'cpu') {
    throw new CommvqError(`the ${label} cache has only a CPU reference so far: run it with --device cpu`, 'its CUDA kernels are issue 18’s next step');
  }
  const description: CacheDescription = {
    mode: 'kivi', label, bits, kv_dtype: model.backend.activationDType, prefill: 'exact',
    codebooks: null, value_encoding: null, seed: null,
  };
  return {
    description,
    make: (capacity, batch = 1) => new KiviCache(model.backend, model.cacheShape, capacity, batch, { bits, group, residual }),
    dispose() {},
  };
}
