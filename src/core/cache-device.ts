/**
 * Which caches run where, in one place, so that a run of several caches (an eval comparison) refuses the ones that
 * cannot run on its device in one line, before any model loads, instead of failing at the third cache an hour in.
 * The peer caches (kivi, int4, int2, fp8) and the CommVQ ablations have only their CPU reference so far; their
 * factories keep their own refusal for library callers that build a cache directly.
 *
 *   checkCachesOnDevice([{ kind: 'dense' }, { kind: 'kivi', bits: 2 }], 'cuda:0')
 *   // throws OptionError: cache: kivi:bits=2 runs only on the CPU reference so far, not on cuda:0
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
      return false; // CPU references; their CUDA kernels are issue 18's next step
  }
}

/** Refuses, in one line naming every one of them, the caches of `specs` that cannot run on `device`. */
export function checkCachesOnDevice(specs: readonly CacheSpec[], device: string): void {
  const refused = specs.filter((s) => !cacheRunsOn(s, device)).map(cacheSpecText);
  if (refused.length === 0) return;
  const which = refused.length === 1 ? `${refused[0]} runs` : `${refused.join(', ')} run`;
  throw new OptionError('cache', undefined, `${which} only on the CPU reference so far, not on ${device}`, 'run them with --device cpu, or leave them out of the list');
}
