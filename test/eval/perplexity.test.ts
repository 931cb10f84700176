/**
 * Perplexity's arithmetic without a model: the sliding windows score every target once (Hugging Face's recipe), the
 * NLL of logit rows is −log softmax in f64, and a CommVQ cache is refused with the faithful prefill.
 */
import { describe, expect, it } from 'vitest';
import { perplexityOf, rowsNll } from '../../src/core/eval/perplexity/nll.js';
import { perplexityCaches } from '../../src/core/eval/perplexity/perplexity-caches.js';
import { perplexityWindows } from '../../src/core/eval/perplexity/windows.js';

/** The targets (stream positions) a window list scores. */
function targets(ws: ReturnType<typeof perplexityWindows>): number[] {
  return ws.flatMap((w) => Array.from({ length: w.end - w.begin - w.scoreFrom }, (_, i) => w.begin + w.scoreFrom + i));
}

describe('perplexity windows', () => {
  it('a stride below the context scores every token after the first exactly once, each window its new tail', () => {
    const ws = perplexityWindows(10, 4, 2);
    expect(ws.map(({ begin, end, scoreFrom }) => [begin, end, scoreFrom])).toEqual([[0, 4, 1], [2, 6, 2], [4, 8, 2], [6, 10, 2]]);
    expect(targets(ws)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const [n, c, s] of [[1000, 128, 32], [1001, 128, 128], [37, 16, 5], [5, 16, 16]] as const) {
      const t = targets(perplexityWindows(n, c, s));
      expect(new Set(t).size).toBe(t.length);
      expect(Math.max(...t)).toBe(n - 1);
    }
  });

  it('disjoint windows (stride = context, the default) lose only each window’s first token', () => {
    const ws = perplexityWindows(10, 4);
    expect(ws.map(({ begin, end, scoreFrom }) => [begin, end, scoreFrom])).toEqual([[0, 4, 1], [4, 8, 1], [8, 10, 1]]);
    expect(targets(ws)).toEqual([1, 2, 3, 5, 6, 7, 9]);
  });

  it('refuses a context below 2, a stride outside 1..context and a corpus of one token', () => {
    expect(() => perplexityWindows(10, 1)).toThrow(/^context 1: must be a whole number of at least 2 tokens$/);
    expect(() => perplexityWindows(10, 4, 5)).toThrow(/^stride 5: must be a whole number within 1\.\.4/);
    expect(() => perplexityWindows(1, 4)).toThrow(/the corpus holds 1 token\(s\)/);
  });
});

describe('perplexity NLL', () => {
  it('is −log softmax of the target in f64, stable at large logits', () => {
    const { sum, count } = rowsNll(Float32Array.of(0, 0, 0, 0, 1000, 0, 0, 0), 4, [1, 0]);
    expect(count).toBe(2);
    expect(sum).toBeCloseTo(Math.log(4), 12);
    const p = [Math.exp(1), Math.exp(2), Math.exp(3)];
    expect(rowsNll(Float32Array.of(1, 2, 3), 3, [0]).sum).toBeCloseTo(-Math.log(p[0]! / (p[0]! + p[1]! + p[2]!)), 6);
    expect(perplexityOf({ sum: 2 * Math.log(4), count: 2 })).toBeCloseTo(4, 12);
    expect(perplexityOf({ sum: 0, count: 0 })).toBeNull();
    expect(() => rowsNll(Float32Array.of(NaN, 0), 2, [1])).toThrow(/NaN or Inf/);
  });

  it('CommVQ caches run strict; an explicit faithful prefill is refused', () => {
    expect(perplexityCaches([{ kind: 'dense' }, { kind: 'commvq', bits: 1, run: 'r' }])).toEqual([{ kind: 'dense' }, { kind: 'commvq', bits: 1, run: 'r', prefill: 'strict' }]);
    expect(() => perplexityCaches([{ kind: 'commvq', bits: 1, run: 'r', prefill: 'faithful' }])).toThrow(/^cache: prefill=faithful attends exactly over the window/);
  });
});
