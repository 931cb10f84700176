/**
 * The CommVQ cache: at every step, its attention equals dense attention over [dequantized compressed tokens; exact
 * window], across flush boundaries (prompt lengths 1, W−1, W, W+1, …), in both prefill modes, with and without
 * sinks; bytes held follow the packed arithmetic.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { attentionF32, ropeF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { CommvqCache, type PrefillMode } from '../../src/core/commvq/commvq-cache.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { ropeTable } from '../../src/core/model/rope.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { StepInputs } from '../../src/core/model/step-inputs.js';
import { compressorShape, initCompressor } from '../../src/core/values/value-compressor.js';

const backend = new CpuBackend();
const shape = { numLayers: 1, queryHeads: 4, kvHeads: 2, headDim: 64 };
const D = shape.kvHeads * shape.headDim;
const W = 8;
const rope = ropeTable({ type: 'default', theta: 10000 }, 64);

function makeCache(prefill: PrefillMode, sinks = 0, capacity = 64, valueEncoding: 'argmax' | { gumbelSeed: number } = 'argmax'): CommvqCache {
  const rng = new SeededRandom(5);
  const theta = Float32Array.from({ length: 3 * 2 * 128 * 32 }, () => 0.05 * rng.normal());
  const valueShape = compressorShape(1, D);
  const params = initCompressor(backend, valueShape, 3);
  const scale = backend.fromArray(Float32Array.from({ length: D }, () => 0.5 + rng.uniform()), [D], 'f32');
  return new CommvqCache(backend, shape, {
    keys: new Map([[0, new LayerKeyCodebook({ residuals: 3, groups: 2, halfSize: 64, pairs: 32 }, theta)]]),
    values: new Map([[0, { params, scale }]]),
    valueShape, rope, window: W, sinks, prefill, capacity, valueEncoding,
  });
}

/** Random pre-RoPE keys, their rotated form, values and queries for tokens start..start+T−1. */
function tokens(rng: SeededRandom, start: number, T: number) {
  const positions = Int32Array.from({ length: T }, (_, i) => start + i);
  const kPre = Float32Array.from({ length: T * D }, () => rng.normal());
  const q = ropeF32(Float32Array.from({ length: T * shape.queryHeads * 64 }, () => rng.normal()), positions, rope);
  return { kPre, k: ropeF32(kPre, positions, rope), v: Float32Array.from({ length: T * D }, () => rng.normal()), q, positions };
}

describe.each(['faithful', 'strict'] as const)('CommvqCache, %s prefill', (mode) => {
  it.each([1, W - 1, W, W + 1, 2 * W + 3])('prompt of %i tokens, then 12 decoding steps across flushes', (P) => {
    const cache = makeCache(mode);
    const rng = new SeededRandom(P);
    const all = { kPre: [] as number[], k: [] as number[], v: [] as number[] };
    const run = (start: number, T: number) => {
      const tk = tokens(rng, start, T);
      all.kPre.push(...tk.kPre);
      all.k.push(...tk.k);
      all.v.push(...tk.v);
      const step = StepInputs.create(backend, Int32Array.from({ length: T }, () => 1), start);
      const f = (a: Float32Array, w: number) => backend.fromArray(a, [T, w], 'f32');
      cache.append(0, { kPre: f(tk.kPre, D), k: f(tk.k, D), v: f(tk.v, D) }, step);
      const out = backend.toFloat32(cache.attend(0, f(tk.q, shape.queryHeads * 64), step));
      return { out, q: tk.q };
    };
    const prefill = run(0, P);
    if (mode === 'faithful') {
      // the prompt's attention is exact (reference §6.3)
      const exact = attentionF32(prefill.q, Float32Array.from(all.k), Float32Array.from(all.v), { ...shape, qStart: 0, kvLength: P });
      expect(maxDiff(prefill.out, exact)).toBeLessThan(1e-5);
    }
    for (let s = 0; s < 12; s++) {
      const pos = P + s;
      const { out, q } = run(pos, 1);
      // dense reference: compressed tokens dequantized and rotated at their positions, exact tokens as they are
      const deq = cache.dequantized(0);
      const N = deq.positions.length;
      expect(N).toBe(Math.floor(pos / W) * W); // flush before appending at every multiple of W
      const keys = new Float32Array((pos + 1) * D);
      keys.set(ropeF32(deq.keys, deq.positions, rope));
      keys.set(all.k.slice(N * D), N * D);
      const values = new Float32Array((pos + 1) * D);
      values.set(deq.values);
      values.set(all.v.slice(N * D), N * D);
      const dense = attentionF32(q, keys, values, { ...shape, qStart: pos, kvLength: pos + 1 });
      expect(maxDiff(out, dense), `step at position ${pos}`).toBeLessThan(2e-3 * (1 + maxAbs(dense)));
    }
    expect(cache.length).toBe(P + 12);
  });
});

describe('CommvqCache accounting', () => {
  it('holds the packed bytes of compressed tokens plus the exact window', () => {
    const cache = makeCache('faithful');
    const rng = new SeededRandom(1);
    const tk = tokens(rng, 0, 2 * W + 3);
    const T = 2 * W + 3;
    const step = StepInputs.create(backend, new Int32Array(T), 0);
    const f = (a: Float32Array, w: number) => backend.fromArray(a, [T, w], 'f32');
    cache.append(0, { kPre: f(tk.kPre, D), k: f(tk.k, D), v: f(tk.v, D) }, step);
    cache.attend(0, f(tk.q, shape.queryHeads * 64), step);
    // R·G = 3·2 codes of 12 bits = 9 bytes + a bf16 norm; N_c = D = 128 bits = 16 bytes + a bf16 scale
    expect(cache.compressedBytesPerToken).toEqual({ key: 11, value: 18 });
    expect(cache.bytes()).toBe(2 * W * (11 + 18) + 3 * (3 * D * 4));
  });

  it('keeps sink tokens exact', () => {
    const cache = makeCache('strict', 2);
    const rng = new SeededRandom(9);
    for (let pos = 0; pos < 2 + 2 * W; pos++) {
      const tk = tokens(rng, pos, 1);
      const step = StepInputs.create(backend, new Int32Array(1), pos);
      const f = (a: Float32Array, w: number) => backend.fromArray(a, [1, w], 'f32');
      cache.append(0, { kPre: f(tk.kPre, D), k: f(tk.k, D), v: f(tk.v, D) }, step);
      cache.attend(0, f(tk.q, shape.queryHeads * 64), step);
    }
    expect(Array.from(cache.dequantized(0).positions)).toEqual(Array.from({ length: W }, (_, i) => 2 + i));
  });
});

describe('CommvqCache value encoding', () => {
  /** The dequantized values of a 3W-token prompt (all three blocks compressed) under an encoding. */
  function valuesUnder(encoding: 'argmax' | { gumbelSeed: number }): Float32Array {
    const cache = makeCache('faithful', 0, 64, encoding);
    const T = 3 * W;
    const tk = tokens(new SeededRandom(3), 0, T);
    const step = StepInputs.create(backend, new Int32Array(T), 0);
    const f = (a: Float32Array, w: number) => backend.fromArray(a, [T, w], 'f32');
    cache.append(0, { kPre: f(tk.kPre, D), k: f(tk.k, D), v: f(tk.v, D) }, step);
    cache.attend(0, f(tk.q, shape.queryHeads * 64), step);
    return cache.dequantized(0).values;
  }

  it('samples the reference’s Gumbel codes reproducibly for a seed (§10.1 item 2), and differently for another seed or argmax', () => {
    const seven = valuesUnder({ gumbelSeed: 7 });
    expect(seven.length).toBe(3 * W * D); // every full block of the prompt is compressed
    expect(valuesUnder({ gumbelSeed: 7 })).toEqual(seven);
    expect(maxDiff(valuesUnder({ gumbelSeed: 8 }), seven)).toBeGreaterThan(0);
    expect(maxDiff(valuesUnder('argmax'), seven)).toBeGreaterThan(0);
    expect(valuesUnder('argmax')).toEqual(valuesUnder('argmax'));
  });
});

function maxDiff(a: Float32Array, b: Float32Array): number {
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
}
function maxAbs(a: Float32Array): number {
  return a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
}
