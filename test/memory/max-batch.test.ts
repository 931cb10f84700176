/** The max-batch search against a fake probe whose threshold is known: doubling from 1, then bisection. */
import { describe, expect, it } from 'vitest';
import { findMaxBatch } from '../../src/core/memory/max-batch.js';
import { measureMemory, type MeasureProgress } from '../../src/core/memory/measure-memory.js';
import type { MemoryPointResult, MemoryPointSpec, MemoryProbe } from '../../src/core/memory/memory-probe.js';

/** Fits up to `threshold` sequences; records every spec it is asked for. */
function fakeProbe(threshold: number): MemoryProbe & { calls: MemoryPointSpec[] } {
  const calls: MemoryPointSpec[] = [];
  return {
    device: 'fake',
    measures: true,
    calls,
    async probe(spec): Promise<MemoryPointResult> {
      calls.push(spec);
      const fits = spec.batch <= threshold;
      const breakdown = { weights: 100, cacheArithmetic: 10 * spec.batch, cacheAllocated: 12 * spec.batch, codebooks: 0, encoders: 0 };
      return { spec, fits, ...(fits ? { peakDecode: 150 + 12 * spec.batch } : { reason: 'out of memory' }), breakdown, bytesPerToken: { arithmetic: 8, allocated: 9 }, deviceBytes: 1000 };
    },
    dispose() {},
  };
}

const target = { cache: 'commvq' as const, bits: 1 as const, context: 32768 };

describe('max-batch search', () => {
  it.each([1, 2, 3, 5, 100, 127, 128, 129, 1023])('finds a threshold of %i exactly, in at most 2·log2 trials', async (threshold) => {
    const probe = fakeProbe(threshold);
    const r = await findMaxBatch((s) => probe.probe(s), target, { limit: 1024 });
    expect(r.maxBatch).toBe(threshold);
    expect(r.capped).toBe(false);
    expect(r.best?.spec.batch).toBe(threshold);
    expect(r.trials.length).toBe(probe.calls.length);
    expect(r.trials.length).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(threshold + 1)) + 1);
    expect(new Set(probe.calls.map((c) => c.batch)).size).toBe(probe.calls.length); // no batch tried twice
    expect(r).toMatchObject({ cache: 'commvq', bits: 1, context: 32768 });
  });

  it('doubles until a miss, then bisects between the last fit and the miss', async () => {
    const probe = fakeProbe(100);
    const r = await findMaxBatch((s) => probe.probe(s), target, { limit: 1024 });
    expect(r.trials.map((t) => t.spec.batch)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 96, 112, 104, 100, 102, 101]);
    expect(r.trials.map((t) => t.fits)).toEqual([true, true, true, true, true, true, true, false, true, false, false, true, false, false]);
  });

  it('answers 0 when one sequence does not fit, after one trial', async () => {
    const r = await findMaxBatch((s) => fakeProbe(0).probe(s), target, { limit: 1024 });
    expect(r).toMatchObject({ maxBatch: 0, capped: false });
    expect(r.best).toBeUndefined();
    expect(r.trials).toHaveLength(1);
    expect(r.trials[0]!.reason).toBe('out of memory');
  });

  it('stops at the limit when the limit fits, and says the answer is capped', async () => {
    const probe = fakeProbe(5000);
    const r = await findMaxBatch((s) => probe.probe(s), target, { limit: 1000 });
    expect(r).toMatchObject({ maxBatch: 1000, capped: true });
    expect(probe.calls.map((c) => c.batch)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]);
    const below = await findMaxBatch((s) => fakeProbe(700).probe(s), target, { limit: 1000 });
    expect(below).toMatchObject({ maxBatch: 700, capped: false });
  });

  it('a search without grid points runs batch 1 with its prompt first, then reserves for the trials', async () => {
    const probe = fakeProbe(3);
    const m = await measureMemory(probe, { points: [], maxBatch: { targets: [target], limit: 8 } });
    expect(m.maxBatch[0]!.maxBatch).toBe(3);
    expect(probe.calls.map((c) => [c.batch, c.prefill ?? 'run'])).toEqual([[1, 'run'], [2, 'reserve'], [4, 'reserve'], [3, 'reserve']]);
  });

  it('keeps the prefill modes apart: a faithful point answers no strict trial, and a search says its mode', async () => {
    const probe = fakeProbe(3);
    const strict = { ...target, prefillMode: 'strict' as const };
    const m = await measureMemory(probe, { points: [{ ...target, batch: 2 }], maxBatch: { targets: [strict], limit: 8 } });
    expect(m.maxBatch[0]).toMatchObject({ cache: 'commvq', bits: 1, prefillMode: 'strict', maxBatch: 3 });
    expect(probe.calls.map((c) => [c.batch, c.prefillMode ?? 'faithful', c.prefill ?? 'run'])).toEqual([
      [2, 'faithful', 'run'], [1, 'strict', 'run'], [2, 'strict', 'reserve'], [4, 'strict', 'reserve'], [3, 'strict', 'reserve'],
    ]);
  });

  it('measureMemory runs the grid, then the searches, reusing grid points and reporting progress', async () => {
    const probe = fakeProbe(20);
    const progress: MeasureProgress[] = [];
    const grid = [1, 8, 64].map((batch) => ({ ...target, batch }));
    const m = await measureMemory(probe, { points: grid, maxBatch: { targets: [target], limit: 64 } }, (p) => progress.push(p));
    expect(m.device).toBe('fake');
    expect(m.points.map((p) => p.fits)).toEqual([true, true, false]);
    expect(m.maxBatch[0]!.maxBatch).toBe(20);
    expect(m.maxBatch[0]!.trials.map((t) => t.spec.batch)).toEqual([1, 2, 4, 8, 16, 32, 24, 20, 22, 21]);
    // batches 1 and 8 were grid points: the search reused them
    expect(probe.calls.map((c) => c.batch)).toEqual([1, 8, 64, 2, 4, 16, 32, 24, 20, 22, 21]);
    // the grid runs prompts; the trials reserve the prefill workspace batch 1 measured instead
    expect(probe.calls.map((c) => c.prefill ?? 'run')).toEqual(['run', 'run', 'run', ...Array<string>(8).fill('reserve')]);
    const finished = progress.filter((p) => p.phase === 'done');
    expect(finished.map((p) => p.index)).toEqual(probe.calls.map((_, i) => i + 1));
    expect(finished.every((p) => p.total >= p.index)).toBe(true);
  });
});
