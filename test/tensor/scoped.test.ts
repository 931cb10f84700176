/**
 * `scoped` and `allOrNothing` (src/core/tensor/tensor.ts): a scope's tensors are disposed once, whether the work
 * returns or throws (scoped), or only when it throws (allOrNothing, for what is being built) — an
 * out-of-memory error part way through a step must not leave its temporaries on the device (measure-memory runs trial
 * after trial in one process; test/gpu/memory-probe.test.ts checks the whole model and caches on a GPU).
 */
import { describe, expect, it } from 'vitest';
import { allOrNothing, scoped, type Tensor } from '../../src/core/tensor/tensor.js';

function counted(): Tensor & { disposals: number } {
  const t = { shape: [1], dtype: 'f32' as const, device: 'cpu', disposals: 0, dispose: () => void t.disposals++ };
  return t;
}

describe('scoped', () => {
  it('disposes what it kept and returns what the work returns (not kept)', () => {
    const [a, b, out] = [counted(), counted(), counted()];
    const got = scoped((s) => {
      s.keep(a);
      s.keep(b);
      return out;
    });
    expect(got).toBe(out);
    expect([a.disposals, b.disposals, out.disposals]).toEqual([1, 1, 0]);
  });

  it('disposes what it kept when the work throws, and rethrows the same error', () => {
    const [a, b] = [counted(), counted()];
    const oom = new Error('GPU out of memory allocating 26.0 MiB');
    expect(() => scoped((s) => {
      s.keep(a);
      s.keep(b);
      throw oom;
    })).toThrow(oom);
    expect([a.disposals, b.disposals]).toEqual([1, 1]);
  });
});

describe('allOrNothing', () => {
  it('keeps what the work built when it returns', () => {
    const [a, b] = [counted(), counted()];
    const got = allOrNothing((s) => [s.keep(a), s.keep(b)]);
    expect(got).toEqual([a, b]);
    expect([a.disposals, b.disposals]).toEqual([0, 0]);
  });

  it('gives back the half-built result when the work throws, and rethrows the same error', () => {
    const [a, b] = [counted(), counted()];
    const oom = new Error('GPU out of memory allocating 18.0 MiB');
    expect(() => allOrNothing((s) => {
      s.keep(a);
      s.keep(b);
      throw oom;
    })).toThrow(oom);
    expect([a.disposals, b.disposals]).toEqual([1, 1]);
  });

  it("lets the scope be the result's disposer", () => {
    const [a, b] = [counted(), counted()];
    const part = allOrNothing((s) => ({ a: s.keep(a), b: s.keep(b), dispose: () => s.dispose() }));
    part.dispose();
    part.dispose();
    expect([a.disposals, b.disposals]).toEqual([1, 1]);
  });
});
