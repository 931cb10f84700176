/**
 * Which caches run where, in one place, so that a run of several caches (an eval comparison) refuses the ones that
 * cannot run on its device in one line, before any model loads, instead of failing at the third cache an hour in.
 * Today only the CommVQ ablations (compress=keys|values) are CPU-only; for library callers that build a cache
 * directly, openCacheFactory and CommvqCache refuse them too (refuseAblationOnDevice), asking cacheRunsOn. A kind that
 * gains or lacks a device path is one line here.
 *
 *   checkCachesOnDevice([{ kind: 'dense' }, { kind: 'commvq', bits: 2, run: 'r', compress: 'keys' }], 'cuda:0')
 *   // throws OptionError: cache: commvq:run=r,bits=2,compress=keys runs only on the CPU reference so far, not on cuda:0
 */
import { cacheSpecText, COMMVQ_DEFAULTS, type CacheSpec } from './cache-spec.js';
import { OptionError } from './errors.js';

/** Whether the spec's cache can run on `device` (a Backend's device name: 'cpu', 'cuda:0', ...). */
export function cacheRunsOn(spec: CacheSpec, device: string): boolean {
  if (device === 'cpu') return true;
  switch (spec.kind) {
    case 'dense':
      return true;
    case 'commvq':
      return (spec.compress ?? COMMVQ_DEFAULTS.compress) === 'both'; // an ablation mixes codes and exact rows, which the kernels do not read
    case 'kivi':
    case 'int4':
    case 'int2':
    case 'fp8':
      return true; // the device twins of peers/ (device-kivi-cache.ts, device-row-cache.ts)
  }
}

/** Refuses, in one line naming every one of them, the caches of `specs` that cannot run on `device`. */
export function checkCachesOnDevice(specs: readonly CacheSpec[], device: string): void {
  const refused = specs.filter((s) => !cacheRunsOn(s, device)).map(cacheSpecText);
  if (refused.length === 0) return;
  const which = refused.length === 1 ? `${refused[0]} runs` : `${refused.join(', ')} run`;
  throw new OptionError('cache', undefined, `${which} only on the CPU reference so far, not on ${device}`, 'run them with --device cpu, or leave them out of the list');
}
