/**
 * The KIVI cache's CPU reference (src/core/peers/kivi-cache.ts) at the layer level, with G = 4, R = 8 so that every
 * flush boundary is a few tokens away: its attention equals a dense cache fed the same dequantized keys and values
 * (and the exact prompt for a prompt step); what it holds quantized and exact is kiviSplit(T) after every step, and
 * depends on T alone; quantized entries stay within the affine bound, exact ones are untouched; bytes() agrees with
 * the accounting arithmetic.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { kiviCacheBytes } from '../../src/core/memory/cache-accounting.js';
import { DenseKVCache, type CacheShape } from '../../src/core/model/kv-cache.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { StepInputs } from '../../src/core/model/step-inputs.js';
import { KiviCache } from '../../src/core/peers/kivi-cache.js';
import type { KiviBits } from '../../src/core/peers/kivi-rows.js';
import { kiviSplit } from '../../src/core/quant/kivi.js';
import { roundF16 as f16 } from '../../src/core/tensor/dtype.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';

const backend = new CpuBackend();
const shape: CacheShape = { numLayers: 1, queryHeads: 4, kvHeads: 2, headDim: 8 };
const C = shape.kvHeads * shape.headDim; // 16
const Q = shape.queryHeads * shape.headDim; // 32
const G = 4;
const R = 8;

/** Random rows [n, w] (keys get a per-channel offset, the outliers KIVI's per-channel keys are for). */
function rows(rng: SeededRandom, n: number, w: number, offset = 0): Float32Array {
  return Float32Array.from({ length: n * w }, (_, i) => rng.normal() + offset * ((i % w) % 3));
}

const tensor = (a: Float32Array, n: number, w: number): Tensor => backend.fromArray(a, [n, w], 'f32');

/** One layer's step: append keys and values [n, C] at `start` (a prompt or one decode token) and attend q [n, Q]. */
function step(cache: { append: KiviCache['append']; attend: KiviCache['attend'] }, s: StepInputs, k: Float32Array, v: Float32Array, q: Float32Array): Float32Array {
  const n = s.tokens;
  const kt = tensor(k, n, C);
  cache.append(0, { kPre: kt, k: kt, v: tensor(v, n, C) }, s);
  return backend.toFloat32(cache.attend(0, tensor(q, n, Q), s));
}

/** Attention of q (one token at position T − 1) by a dense cache holding keys and values [T, C]. */
function denseAttend(keys: Float32Array, values: Float32Array, T: number, q: Float32Array): Float32Array {
  const dense = new DenseKVCache(backend, shape, T);
  const kt = tensor(keys, T, C);
  dense.append(0, { kPre: kt, k: kt, v: tensor(values, T, C) }, StepInputs.create(backend, new Int32Array(T), 0));
  return backend.toFloat32(dense.attend(0, tensor(q, 1, Q), StepInputs.create(backend, Int32Array.of(0), T - 1)));
}

describe.each([2, 1] as KiviBits[])('KiviCache, %i bits, G 4, R 8', (bits) => {
  const o = { bits, group: G, residual: R };

  it('prompt attention is exact; each decode step equals a dense cache fed its dequantized keys and values', () => {
    const rng = new SeededRandom(5);
    const P = 3;
    const N = 3 * R + 2; // decoding crosses key flushes at 8, 16, 24 and value flushes from 9 on
    const kivi = new KiviCache(backend, shape, N, 1, o);
    const [k0, v0, q0] = [rows(rng, P, C, 4), rows(rng, P, C), rows(rng, P, Q)];
    const prompt = step(kivi, StepInputs.prompt(backend, new Int32Array(P), 0), k0, v0, q0);
    const denseCache = new DenseKVCache(backend, shape, N);
    expect(prompt).toEqual(step(denseCache, StepInputs.prompt(backend, new Int32Array(P), 0), k0, v0, q0));
    kivi.endPrompt();
    for (let T = P + 1; T <= N; T++) {
      const [k, v, q] = [rows(rng, 1, C, 4), rows(rng, 1, C), rows(rng, 1, Q)];
      const s = StepInputs.create(backend, Int32Array.of(0), T - 1);
      kivi.append(0, { kPre: tensor(k, 1, C), k: tensor(k, 1, C), v: tensor(v, 1, C) }, s);
      const seen = kivi.dequantized(0); // what this step's query reads: its own key and value exact
      expect(seen.keys.subarray((T - 1) * C)).toEqual(k);
      expect(seen.values.subarray((T - 1) * C)).toEqual(v);
      const got = backend.toFloat32(kivi.attend(0, tensor(q, 1, Q), s));
      expect(got, `T = ${T}`).toEqual(denseAttend(seen.keys, seen.values, T, q));
      // after the step: flushed to kiviSplit(T) (keys at T = 8, 16, 24; one value per step past 8)
      expect(kivi.rowsOf(0).held('keys'), `keys at T = ${T}`).toEqual(kiviSplit(T, 'keys', o));
      expect(kivi.rowsOf(0).held('values'), `values at T = ${T}`).toEqual(kiviSplit(T, 'values', o));
    }
  });

  it.each([R - 1, R, R + 1, 2 * R - 1, 2 * R, 2 * R + 1, 3 * R + 5])('a prompt of %i tokens holds kiviSplit, the same state as decoding up to it', (T) => {
    const rng = new SeededRandom(T);
    const [k, v] = [rows(rng, T, C, 4), rows(rng, T, C)];
    const prefilled = new KiviCache(backend, shape, T, 1, o);
    step(prefilled, StepInputs.prompt(backend, new Int32Array(T), 0), k, v, rows(rng, T, Q));
    expect(prefilled.rowsOf(0).held('keys')).toEqual(kiviSplit(T, 'keys', o));
    expect(prefilled.rowsOf(0).held('values')).toEqual(kiviSplit(T, 'values', o));
    const decoded = new KiviCache(backend, shape, T, 1, o);
    step(decoded, StepInputs.prompt(backend, new Int32Array(1), 0), k.slice(0, C), v.slice(0, C), rows(rng, 1, Q));
    for (let t = 1; t < T; t++) step(decoded, StepInputs.create(backend, Int32Array.of(0), t), k.slice(t * C, (t + 1) * C), v.slice(t * C, (t + 1) * C), rows(rng, 1, Q));
    expect(decoded.dequantized(0)).toEqual(prefilled.dequantized(0));
    expect(prefilled.bytes()).toBe(kiviCacheBytes(shape, T, o, 'f32'));
  });

  it('a prompt run in row chunks attends exactly over its earlier chunks too (they are scratch until endPrompt)', () => {
    const rng = new SeededRandom(12);
    const T = 2 * R + 3;
    const [k, v, q] = [rows(rng, T, C, 4), rows(rng, T, C), rows(rng, T, Q)];
    const kivi = new KiviCache(backend, shape, T, 1, o);
    const dense = new DenseKVCache(backend, shape, T);
    for (const [a, b] of [[0, R + 1], [R + 1, T]] as const) {
      const chunk = (x: Float32Array, w: number) => x.slice(a * w, b * w);
      const s = () => StepInputs.prompt(backend, new Int32Array(b - a), a);
      expect(step(kivi, s(), chunk(k, C), chunk(v, C), chunk(q, Q)), `rows ${a}..${b}`).toEqual(step(dense, s(), chunk(k, C), chunk(v, C), chunk(q, Q)));
    }
    expect(kivi.rowsOf(0).held('keys')).toEqual(kiviSplit(T, 'keys', o)); // stored as KIVI would after the whole prompt
  });

  it('quantized keys and values are within the affine bound of their group; exact ones are untouched', () => {
    const T = 2 * R + 5;
    const rng = new SeededRandom(9);
    const [k, v] = [rows(rng, T, C, 40), rows(rng, T, C)];
    const cache = new KiviCache(backend, shape, T, 1, o);
    step(cache, StepInputs.prompt(backend, new Int32Array(T), 0), k, v, rows(rng, T, Q));
    const { keys, values } = cache.dequantized(0);
    const kq = kiviSplit(T, 'keys', o).quantized; // 16: groups of G tokens per channel
    const vq = kiviSplit(T, 'values', o).quantized; // 13: groups of G channels per token
    for (let t0 = 0; t0 < kq; t0 += G) for (let c = 0; c < C; c++) checkGroup(k, keys, Array.from({ length: G }, (_, i) => (t0 + i) * C + c), bits);
    for (let t = 0; t < vq; t++) for (let c0 = 0; c0 < C; c0 += G) checkGroup(v, values, Array.from({ length: G }, (_, i) => t * C + c0 + i), bits);
    expect(keys.subarray(kq * C)).toEqual(k.subarray(kq * C));
    expect(values.subarray(vq * C)).toEqual(v.subarray(vq * C));
  });
});

/** |x − x̂| ≤ max(s′/2, L·|s − s′| + |min − z′|) over one group's indices (the bound affine-groups.ts derives), plus f32 rounding. */
function checkGroup(x: Float32Array, xHat: Float32Array, at: number[], bits: number): void {
  const L = 2 ** bits - 1;
  const min = Math.min(...at.map((i) => x[i]!));
  const s = (Math.max(...at.map((i) => x[i]!)) - min) / L;
  const bound = Math.max(f16(s) / 2, L * Math.abs(s - f16(s)) + Math.abs(min - f16(min)));
  for (const i of at) expect(Math.abs(x[i]! - xHat[i]!)).toBeLessThanOrEqual(bound + 1e-6 * (1 + Math.abs(x[i]!)));
}
