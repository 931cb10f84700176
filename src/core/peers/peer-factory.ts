/**
 * The peer caches of a spec (int4/int2, fp8) as a CacheFactory: nothing to load, a description that results record,
 * and `make` giving the kind's cache: a RowQuantCache (the CPU reference) on the CPU, a DeviceRowQuantCache (the same
 * codes, quantized and attended on the GPU) on CUDA.
 *
 *   peerCacheFactory(model, { kind: 'int4' }).description   // { mode: 'int4', label: 'int4-g64', bits: 4, group: 64, residual: 128, ... }
 *   peerCacheFactory(model, { kind: 'int2', group: 32, residual: 64 }).description.label   // 'int2-g32-r64'
 */
import { INT_DEFAULTS, type Fp8CacheSpec, type IntCacheSpec } from '../cache-spec.js';
import type { CacheDescription, CacheFactory } from '../cache-factory.js';
import { CudaBackend } from '../backend/cuda/cuda-backend.js';
import type { LlamaModel } from '../model/llama.js';
import { DeviceRowQuantCache, type DeviceRowSpec } from './device-row-cache.js';
import { fp8RowCodec } from './fp8-rows.js';
import { intRowCodec } from './int-rows.js';
import { intLabel } from './peer-labels.js';
import type { RowCodec } from './row-codec.js';
import { RowQuantCache } from './row-quant-cache.js';

export function peerCacheFactory(model: LlamaModel, spec: IntCacheSpec | Fp8CacheSpec): CacheFactory {
  const { kvHeads, headDim } = model.cacheShape;
  let codec: RowCodec;
  let residual = 0; // fp8 keeps nothing exact
  let label: string;
  let options: Pick<CacheDescription, 'group' | 'residual'> = {};
  let deviceSpec: DeviceRowSpec = { kind: 'fp8' };
  if (spec.kind === 'fp8') {
    codec = fp8RowCodec(kvHeads, headDim);
    label = 'fp8';
  } else {
    const group = spec.group ?? INT_DEFAULTS.group;
    residual = spec.residual ?? INT_DEFAULTS.residual;
    codec = intRowCodec(spec.kind === 'int4' ? 4 : 2, group, kvHeads, headDim);
    label = intLabel(spec.kind, group, residual); // the residual named only where it is not HF's
    options = { group, residual };
    deviceSpec = { kind: spec.kind, group };
  }
  const description: CacheDescription = {
    mode: spec.kind, label, bits: codec.bits, kv_dtype: model.backend.activationDType, prefill: 'exact',
    codebooks: null, value_encoding: null, seed: null, ...options,
  };
  const b = model.backend;
  const make = (capacity: number, batch = 1) =>
    b instanceof CudaBackend ? new DeviceRowQuantCache(b, model.cacheShape, capacity, batch, deviceSpec, residual) : new RowQuantCache(b, model.cacheShape, capacity, batch, codec, residual);
  return { description, make, dispose() {} };
}
