/**
 * The factory of KIVI caches (cache-factory.ts hands a `kivi` spec here): the description results record, and fresh
 * caches per prompt: the CPU reference (KiviCache) on the CPU, DeviceKiviCache (fused kernels) on CUDA.
 *
 *   const caches = openKiviFactory(model, { kind: 'kivi', bits: 2 });
 *   caches.description.label   // 'kivi-2bit-g32-r128'
 *   const cache = caches.make(promptIds.length + maxNewTokens);
 */
import type { CacheDescription, CacheFactory } from '../cache-factory.js';
import { KIVI_DEFAULTS, type KiviCacheSpec } from '../cache-spec.js';
import { CudaBackend } from '../backend/cuda/cuda-backend.js';
import type { LlamaModel } from '../model/llama.js';
import { DeviceKiviCache } from './device-kivi-cache.js';
import { KiviCache } from './kivi-cache.js';
import { kiviLabel } from './peer-labels.js';

/** KIVI caches of a checked spec (checkCacheSpec) for `model`. */
export function openKiviFactory(model: LlamaModel, spec: KiviCacheSpec): CacheFactory {
  const bits = spec.bits!;
  const group = spec.group ?? KIVI_DEFAULTS.group;
  const residual = spec.residual ?? KIVI_DEFAULTS.residual;
  const label = kiviLabel(bits, group, residual);
  const description: CacheDescription = {
    mode: 'kivi', label, bits, kv_dtype: model.backend.activationDType, prefill: 'exact',
    codebooks: null, value_encoding: null, seed: null,
  };
  return {
    description,
    make: (capacity, batch = 1) => {
      const b = model.backend;
      const o = { bits, group, residual };
      return b instanceof CudaBackend ? new DeviceKiviCache(b, model.cacheShape, capacity, batch, o) : new KiviCache(b, model.cacheShape, capacity, batch, o);
    },
    dispose() {},
  };
}
