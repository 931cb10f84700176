/**
 * The peer caches (RowQuantCache with the int4/int2 and fp8 codecs) driven directly with random keys, values and
 * queries on the CPU backend:
 * - each step's attention equals a DenseKVCache fed what the cache holds (its dequantized tokens) plus the step's
 *   own tokens exact — the exact twin — to 1e-6;
 * - what it holds round-trips within the format's bound, and its exact tokens are bit-equal;
 * - the split quantized/exact after each step is HF's (flush-rule.ts) across prompt lengths R − 1, R, R + group
 *   and R + 1 decode steps;
 * - bytes() is the arithmetic of cache-accounting.ts plus the exact part; another backend is refused in one line.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/core/backend/backend.js';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { fp8BytesPerToken, intBytesPerToken } from '../../src/core/memory/cache-accounting.js';
import { DenseKVCache, type CacheShape } from '../../src/core/model/kv-cache.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { StepInputs } from '../../src/core/model/step-inputs.js';
import { fp8RowCodec } from '../../src/core/peers/fp8-rows.js';
import { intRowCodec } from '../../src/core/peers/int-rows.js';
import { RowQuantCache } from '../../src/core/peers/row-quant-cache.js';
import { fp8Excess, intExcess } from './bounds.js';

const backend = new CpuBackend();
const shape: CacheShape = { numLayers: 2, queryHeads: 4, kvHeads: 2, headDim: 64 };
const W = shape.kvHeads * shape.headDim;
const R = 8; // a small residual, so that flushes come within a few steps

const kinds = [
  { name: 'int4-g64', make: (cap: number, batch = 1) => new RowQuantCache(backend, shape, cap, batch, intRowCodec(4, 64, 2, 64), R), excess: (x: Float32Array, y: Float32Array) => intExcess(x, y, 4, 64) },
  { name: 'int2-g32', make: (cap: number, batch = 1) => new RowQuantCache(backend, shape, cap, batch, intRowCodec(2, 32, 2, 64), R), excess: (x: Float32Array, y: Float32Array) => intExcess(x, y, 2, 32) },
  { name: 'fp8', make: (cap: number, batch = 1) => new RowQuantCache(backend, shape, cap, batch, fp8RowCodec(2, 64), 0), excess: (x: Float32Array, y: Float32Array) => fp8Excess(x, y, 64) },
];

/** A layer's step inputs: k, v [T, W] and q [T, H_q·D_h], seeded. */
function stepData(rng: SeededRandom, T: number): { k: Float32Array; v: Float32Array; q: Float32Array } {
  const draw = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  return { k: draw(T * W), v: draw(T * W), q: draw(T * shape.queryHeads * shape.headDim) };
}

/** Appends one step to every layer and attends; returns each layer's output [T, H_q·D_h] and the data fed. */
function runStep(cache: RowQuantCache, step: StepInputs, data: ReturnType<typeof stepData>[]): Float32Array[] {
  return data.map((d, l) => {
    const T = d.k.length / W;
    const t = (x: Float32Array, cols: number) => backend.fromArray(x, [T, cols], 'f32');
    const k = t(d.k, W);
    cache.append(l, { kPre: k, k, v: t(d.v, W) }, step);
    return backend.toFloat32(cache.attend(l, t(d.q, shape.queryHeads * shape.headDim), step));
  });
}

/** The exact twin: a dense cache holding `held` (what the cache held before the step) then the step's rows exact. */
function twin(held: { k: Float32Array; v: Float32Array }, d: ReturnType<typeof stepData>, start: number): Float32Array {
  const T = d.k.length / W;
  const n = start + T;
  const dense = new DenseKVCache(backend, shape, n);
  const cat = (a: Float32Array, b: Float32Array) => backend.fromArray(Float32Array.from([...a, ...b]), [n, W], 'f32');
  const k = cat(held.k, d.k);
  dense.append(0, { kPre: k, k, v: cat(held.v, d.v) }, StepInputs.create(backend, new Int32Array(n), 0));
  return backend.toFloat32(dense.attend(0, backend.fromArray(d.q, [T, shape.queryHeads * shape.headDim], 'f32'), StepInputs.create(backend, new Int32Array(T), start)));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.each(kinds)('$name cache', ({ name, make, excess }) => {
  const residual = name === 'fp8' ? 0 : R;
  it.each([R - 1, R, R + 32])('prompt of %i then R + 1 decode steps: the exact twin, HF split, bounds', (prompt) => {
    const rng = new SeededRandom(prompt);
    const steps = R + 1;
    const cache = make(prompt + steps);
    let start = 0;
    let exact = 0;
    for (let i = 0; i <= steps; i++) {
      const T = i === 0 ? prompt : 1;
      const data = Array.from({ length: shape.numLayers }, () => stepData(rng, T));
      const held = data.map((_, l) => cache.dequantized(l, 0));
      const step = StepInputs.create(backend, new Int32Array(T), start);
      const out = runStep(cache, step, data);
      data.forEach((d, l) => expect(maxDiff(out[l]!, twin(held[l]!, d, start)), `${name} step ${i} layer ${l}`).toBeLessThan(1e-6));
      start += T;
      exact = i === 0 || exact + 1 >= residual ? 0 : exact + 1;
      expect(cache.split(1, 0), `step ${i}`).toEqual({ quantized: start - exact, exact });
      // what the cache holds: codes within the bound, exact tokens as given
      const { k } = cache.dequantized(1, 0);
      const last = data[1]!.k;
      const q = start - exact;
      if (q >= start - T) expect(excess(last, k.subarray((start - T) * W, start * W))).toBeLessThanOrEqual(1);
      else expect(k.subarray((start - T) * W, start * W)).toEqual(last);
    }
    expect(cache.length).toBe(prompt + steps);
  });

  it('bytes() is the arithmetic: capacity rows of codes and scales, plus R − 1 exact tokens', () => {
    const cache = make(100, 3);
    const g = { numLayers: shape.numLayers, kvHeads: shape.kvHeads, headDim: shape.headDim };
    const perToken = name === 'fp8' ? fp8BytesPerToken(g) : intBytesPerToken(g, name.startsWith('int4') ? 4 : 2, name.endsWith('64') ? 64 : 32);
    const exact = name === 'fp8' ? 0 : 2 * (R - 1) * W * 4;
    expect(cache.bytes()).toBe(shape.numLayers * 3 * (100 * perToken + exact));
  });

  it('rewinds with seek and appends again at the new end', () => {
    const rng = new SeededRandom(5);
    const cache = make(40);
    runStep(cache, StepInputs.create(backend, new Int32Array(20), 0), [stepData(rng, 20), stepData(rng, 20)]);
    cache.seek(12);
    expect(cache.length).toBe(12);
    runStep(cache, StepInputs.create(backend, new Int32Array(1), 12), [stepData(rng, 1), stepData(rng, 1)]);
    expect(cache.length).toBe(13);
    expect(() => cache.seek(30)).toThrow(/only rewinds/);
  });
});

describe('the peer caches refuse', () => {
  it('a backend other than the CPU, in one line naming the kind and its GPU twin', () => {
    const gpu = { device: 'cuda:0', activationDType: 'bf16' } as unknown as Backend;
    expect(() => new RowQuantCache(gpu, shape, 8, 1, intRowCodec(4, 64, 2, 64), 128)).toThrow(/^RowQuantCache \(int4-g64\) is the CPU reference and holds host arrays, not cuda:0 tensors$/);
    expect(() => new RowQuantCache(gpu, shape, 8, 1, fp8RowCodec(2, 64), 0)).toThrow(/\(fp8\) is the CPU reference/);
  });

  it('a step that does not start at the end', () => {
    const cache = kinds[0]!.make(8);
    const rng = new SeededRandom(1);
    expect(() => runStep(cache, StepInputs.create(backend, new Int32Array(1), 3), [stepData(rng, 1)])).toThrow(/a step at 3 after 0 tokens/);
  });
});
