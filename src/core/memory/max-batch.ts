/**
 * The largest batch that fits at one context: grow by doubling from 1 until a batch does not fit, then bisect
 * between the last fit and the first miss. Every trial is one probe call and is kept, so the report shows how the
 * answer was found. A batch of 1 that does not fit gives 0 (an answer, not an error).
 *
 *   const r = await findMaxBatch((spec) => probe.probe(spec), { cache: 'commvq', bits: 1, context: 32768 }, { limit: 1024 });
 *   r.maxBatch;   // e.g. 151; r.trials: batches 1, 2, 4, ..., 256, 128, 192, ...
 */
import type { MemoryPointResult, MemoryPointSpec } from './memory-probe.js';

export interface MaxBatchResult {
  readonly cache: MemoryPointSpec['cache'];
  readonly bits?: 1 | 2;
  readonly prefillMode?: MemoryPointSpec['prefillMode'];
  readonly context: number;
  /** the largest batch that fit (0: not even one sequence) */
  readonly maxBatch: number;
  /** true when the search stopped at the limit with the limit fitting: the answer is at least maxBatch */
  readonly capped: boolean;
  /** the trial at maxBatch (absent when maxBatch is 0) */
  readonly best?: MemoryPointResult;
  /** every trial in the order run */
  readonly trials: readonly MemoryPointResult[];
}

export async function findMaxBatch(
  measure: (spec: MemoryPointSpec) => Promise<MemoryPointResult>,
  target: Omit<MemoryPointSpec, 'batch'>,
  o: { limit: number },
): Promise<MaxBatchResult> {
  const limit = Math.max(1, Math.floor(o.limit));
  const trials: MemoryPointResult[] = [];
  const fits = new Map<number, MemoryPointResult>();
  const trial = async (batch: number): Promise<boolean> => {
    const r = await measure({ ...target, batch });
    trials.push(r);
    if (r.fits) fits.set(batch, r);
    return r.fits;
  };
  let lo = 0; // largest batch known to fit
  let hi: number | undefined; // smallest batch known not to fit
  for (let batch = 1; ; batch = Math.min(2 * batch, limit)) {
    if (!(await trial(batch))) {
      hi = batch;
      break;
    }
    lo = batch;
    if (batch >= limit) break;
  }
  while (hi !== undefined && hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await trial(mid)) lo = mid;
    else hi = mid;
  }
  const best = fits.get(lo);
  const { cache, bits, prefillMode, context } = target;
  return { cache, ...(bits ? { bits } : {}), ...(prefillMode ? { prefillMode } : {}), context, maxBatch: lo, capped: hi === undefined, ...(best ? { best } : {}), trials };
}
