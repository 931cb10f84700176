/**
 * The caches of a perplexity run, checked before the model loads: a CommVQ cache without prefill= gets the strict
 * prefill (every window position attends as in decoding); an explicit prefill=faithful is refused (it attends exactly
 * over the window: its perplexity would be the dense one); two caches must not share a label (their windows would
 * share a log).
 *
 *   perplexityCaches([{ kind: 'dense' }, { kind: 'commvq', bits: 1, run: 'runs/a' }])   // the commvq one with prefill 'strict'
 */
import { OptionError } from '../../errors.js';
import type { CacheSpec } from '../../cache-spec.js';

export function perplexityCaches(specs: readonly CacheSpec[]): CacheSpec[] {
  if (specs.length === 0) throw new OptionError('cache', undefined, 'no cache to score');
  return specs.map((s) => {
    if (s.kind !== 'commvq') return s;
    if (s.prefill === 'faithful') {
      throw new OptionError('cache', undefined, 'prefill=faithful attends exactly over the window, so its perplexity would be the dense one', 'leave prefill out (eval perplexity uses strict) or give prefill=strict');
    }
    return { ...s, prefill: 'strict' };
  });
}
