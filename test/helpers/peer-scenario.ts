/**
 * The peer caches' device-against-reference scenario, shared by the GPU test (test/gpu/peer-caches.test.ts, on
 * CudaBackend) and its CPU twin on the emulated device (test/peers/device-caches-emulated.test.ts): the kinds under
 * test, the steps, and the bounds, argued in the GPU test's header.
 */
import { expect } from 'vitest';
import type { Backend } from '../../src/core/backend/backend.js';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import type { CudaBackend } from '../../src/core/backend/cuda/cuda-backend.js';
import type { CacheShape, KVCache } from '../../src/core/model/kv-cache.js';
import { StepInputs } from '../../src/core/model/step-inputs.js';
import { DeviceKiviCache } from '../../src/core/peers/device-kivi-cache.js';
import { DeviceRowQuantCache } from '../../src/core/peers/device-row-cache.js';
import { fp8RowCodec } from '../../src/core/peers/fp8-rows.js';
import { intRowCodec } from '../../src/core/peers/int-rows.js';
import { KiviCache } from '../../src/core/peers/kivi-cache.js';
import { RowQuantCache } from '../../src/core/peers/row-quant-cache.js';
import { bf16ToF32, f32ToBf16 } from '../../src/core/tensor/dtype.js';
import { checkClose, maxAbs, randomBf16, Rng } from '../gpu/gpu-helpers.js';

/** One kind under test: its CPU reference and its GPU cache, and how its round trip is bounded. */
export interface Kind {
  name: string;
  /** the CPU reference on `b`, or (onDevice) the GPU cache on a CUDA backend */
  make(b: Backend, onDevice: boolean, shape: CacheShape, capacity: number, batch: number): KVCache;
  /** the round-trip bound of each element of a sequence's keys or values x [T, W] (raw inputs) */
  roundTrip(x: Float32Array, T: number, shape: CacheShape, part: 'keys' | 'values', quantized: number): Float32Array;
  /** how many of T tokens are quantized, keys or values (the rest exact) */
  split(cache: KVCache, layer: number, sequence: number): { keys: number; values: number };
  /** the cache's keys and values [T, W] as attention reads them */
  read(cache: KVCache, layer: number, sequence: number): { k: Float32Array; v: Float32Array };
}

const rowKind = (bits: 4 | 2 | 8, group: number, residual: number): Kind => ({
  name: bits === 8 ? 'fp8' : `int${bits}-g${group}-r${residual}`,
  make: (b, onDevice, shape, capacity, batch) => {
    if (onDevice) return new DeviceRowQuantCache(b as CudaBackend, shape, capacity, batch, bits === 8 ? { kind: 'fp8' } : { kind: bits === 4 ? 'int4' : 'int2', group }, residual);
    const codec = bits === 8 ? fp8RowCodec(shape.kvHeads, shape.headDim) : intRowCodec(bits, group, shape.kvHeads, shape.headDim);
    return new RowQuantCache(b, shape, capacity, batch, codec, residual);
  },
  roundTrip: (x, T, shape, _part, quantized) => (bits === 8 ? fp8Bound(x, T, shape, quantized) : affineBound(x, T, shape, 'token', bits, group, quantized)),
  split: (cache, layer, sequence) => {
    const s = (cache as RowQuantCache | DeviceRowQuantCache).split(layer, sequence);
    return { keys: s.quantized, values: s.quantized };
  },
  read: (cache, layer, sequence) => (cache as RowQuantCache | DeviceRowQuantCache).dequantized(layer, sequence),
});

const kiviKind = (bits: 2 | 1, group: number, residual: number): Kind => ({
  name: `kivi${bits}-g${group}-r${residual}`,
  make: (b, onDevice, shape, capacity, batch) =>
    onDevice ? new DeviceKiviCache(b as CudaBackend, shape, capacity, batch, { bits, group, residual }) : new KiviCache(b, shape, capacity, batch, { bits, group, residual }),
  roundTrip: (x, T, shape, part, quantized) => affineBound(x, T, shape, part === 'keys' ? 'channel' : 'token', bits, group, quantized),
  split: (cache, layer, sequence) => {
    if (cache instanceof DeviceKiviCache) {
      const s = cache.split(layer, sequence);
      return { keys: s.keys.quantized, values: s.values.quantized };
    }
    const rows = (cache as KiviCache).rowsOf(layer, sequence);
    return { keys: rows.held('keys').quantized, values: rows.held('values').quantized };
  },
  read: (cache, layer, sequence) => {
    const { keys, values } = (cache as KiviCache | DeviceKiviCache).dequantized(layer, sequence);
    return { k: keys, v: values };
  },
});

export const KINDS: Kind[] = [
  rowKind(4, 32, 8), rowKind(4, 64, 5), rowKind(2, 32, 8), rowKind(2, 64, 0), rowKind(8, 0, 0),
  kiviKind(2, 8, 16), kiviKind(1, 8, 16), kiviKind(2, 32, 32), kiviKind(1, 16, 32),
];
/** [H_kv, G = H_q/H_kv, D_h] */
export const GEOMETRIES: [number, number, number][] = [[2, 1, 64], [2, 4, 128], [1, 8, 64], [2, 3, 128]];

const bf16 = (x: Float32Array) => x.map((v) => bf16ToF32(f32ToBf16(v)));

export interface Scenario {
  /** per sequence, its prompt's chunk lengths */
  prompts: number[][];
  steps: number;
  capacity: number;
  seed: number;
}

/**
 * Runs `sc` on the CPU reference and on the device cache of `kind` (on `cuda`), comparing every step's outputs, then
 * the stored state and the round trips; ends with the device cache disposed and `cuda`'s allocator where it started.
 */
export function runPeerScenario(kind: Kind, shape: CacheShape, sc: Scenario, cuda: Pick<CudaBackend, 'memory' | 'synchronize' | 'fromArray' | 'toFloat32' | 'activationDType'>): void {
  const cpu = new CpuBackend();
  const before = cuda.memory().bytesInUse;
  const B = sc.prompts.length;
  const W = shape.kvHeads * shape.headDim;
  const Wq = shape.queryHeads * shape.headDim;
  const host = kind.make(cpu, false, shape, sc.capacity, B);
  const device = kind.make(cuda as Backend, true, shape, sc.capacity, B);
  const rng = new Rng(sc.seed);
  const inputs = Array.from({ length: B }, () => Array.from({ length: shape.numLayers }, () => ({ k: [] as number[], v: [] as number[] })));
  const what = (s: string) => `${kind.name} [${shape.kvHeads}×${shape.queryHeads / shape.kvHeads}, D ${shape.headDim}] seed ${sc.seed}: ${s}`;

  /** One step on both caches; compares the outputs. `groups`: [sequence, start, tokens] in row order. */
  const step = (groups: [number, number, number][], prompt: boolean) => {
    const T = groups.reduce((n, g) => n + g[2], 0);
    const make = (b: Backend) =>
      groups.length > 1 ? StepInputs.decode(b, new Int32Array(T), groups.map((g) => g[1])) : prompt ? StepInputs.prompt(b, new Int32Array(T), groups[0]![1], groups[0]![0]) : StepInputs.create(b, new Int32Array(T), groups[0]![1], undefined, groups[0]![0]);
    const [hs, ds] = [make(cpu), make(cuda as Backend)];
    for (let l = 0; l < shape.numLayers; l++) {
      const k = randomBf16(rng, T * W);
      const v = randomBf16(rng, T * W, 0.5, 0.25);
      const q = randomBf16(rng, T * Wq, 0.5);
      let row = 0;
      for (const [s, , n] of groups) {
        for (const x of k.subarray(row * W, (row + n) * W)) inputs[s]![l]!.k.push(x); // no spread: rows of 1000 tokens overflow the stack
        for (const x of v.subarray(row * W, (row + n) * W)) inputs[s]![l]!.v.push(x);
        row += n;
      }
      const outs = ([[cpu, host, hs], [cuda as Backend, device, ds]] as const).map(([b, cache, st]) => {
        const t = (x: Float32Array, w: number) => b.fromArray(x, [T, w], b.activationDType);
        const [kt, vt, qt] = [t(k, W), t(v, W), t(q, Wq)];
        cache.append(l, { kPre: kt, k: kt, v: vt }, st);
        const o = cache.attend(l, qt, st);
        const out = b.toFloat32(o);
        [kt, vt, qt, o].forEach((x) => x.dispose());
        return out;
      });
      const [want, got] = [outs[0]!, outs[1]!];
      // the largest |v̂| any row attends over: the raw values' largest, up to f16 rounding of the codes' zero and scale
      const vmax = 1.01 * Math.max(...inputs.map((seq) => maxAbs(seq[l]!.v)));
      const extra = prompt ? promptExtra(q, groups, inputs, l, shape, vmax) : 0;
      const bound = prompt ? (i: number) => 2 ** -7 * Math.abs(want[i]!) + 2 ** -8 * vmax + extra : (i: number) => 2 ** -8 * Math.abs(want[i]!) + 2 ** -12 * vmax;
      const err = checkClose(what(`layer ${l}, ${prompt ? 'prompt' : 'decode'} step ${JSON.stringify(groups)}`), got, want, bound);
      expect(err).toBeNull();
    }
    hs.dispose();
    ds.dispose();
  };

  // prompts, one sequence at a time (sequence 2's in two chunks), then decode steps of every sequence together
  const lengths = new Array<number>(B).fill(0);
  sc.prompts.forEach((chunks, s) => {
    for (const n of chunks) {
      step([[s, lengths[s]!, n]], true);
      lengths[s] = lengths[s]! + n;
    }
  });
  host.endPrompt?.();
  device.endPrompt?.();
  for (let i = 0; i < sc.steps; i++) {
    step(lengths.map((start, s) => [s, start, 1]), false);
    lengths.forEach((_, s) => (lengths[s] = lengths[s]! + 1));
  }

  for (let s = 0; s < B; s++) {
    expect(device.lengthOf(s)).toBe(lengths[s]);
    for (let l = 0; l < shape.numLayers; l++) {
      const split = kind.split(device, l, s);
      expect(split, what(`the split of sequence ${s}, layer ${l}`)).toEqual(kind.split(host, l, s));
      const mine = kind.read(device, l, s);
      const want = kind.read(host, l, s);
      // the stored state: bf16 of the reference's f32, bit for bit
      expect(checkClose(what(`keys of ${s}, layer ${l}`), mine.k, bf16(want.k), () => 0)).toBeNull();
      expect(checkClose(what(`values of ${s}, layer ${l}`), mine.v, bf16(want.v), () => 0)).toBeNull();
      // round trips against the raw inputs
      const x = inputs[s]![l]!;
      const T = lengths[s]!;
      const kb = kind.roundTrip(Float32Array.from(x.k), T, shape, 'keys', split.keys);
      const vb = kind.roundTrip(Float32Array.from(x.v), T, shape, 'values', split.values);
      expect(checkClose(what(`key round trip of ${s}, layer ${l}`), mine.k, x.k, (i) => kb[i]! + 2 ** -8 * Math.abs(mine.k[i]!))).toBeNull();
      expect(checkClose(what(`value round trip of ${s}, layer ${l}`), mine.v, x.v, (i) => vb[i]! + 2 ** -8 * Math.abs(mine.v[i]!))).toBeNull();
    }
  }
  host.dispose();
  device.dispose();
  cuda.synchronize();
  expect(cuda.memory().bytesInUse, what('bytes left in use after dispose')).toBe(before);
}

/**
 * What a prompt chunk after the first may add to the prompt bound of the header: (e^{2Δs} − 1 + 2^-8)·max|v̂|, Δs from
 * the step's own queries and the sequence's keys; 0 for a chunk starting at 0 (it reads no codes).
 */
function promptExtra(q: Float32Array, groups: [number, number, number][], inputs: { k: number[] }[][], layer: number, shape: CacheShape, vmax: number): number {
  const [sequence, start] = groups[0]!;
  if (start === 0) return 0;
  const D = shape.headDim;
  let q1 = 0;
  for (let h = 0; h < q.length / D; h++) {
    let n = 0;
    for (let d = 0; d < D; d++) n += Math.abs(q[h * D + d]!);
    q1 = Math.max(q1, n);
  }
  const kmax = 1.01 * maxAbs(inputs[sequence]![layer]!.k); // codes reach at most the group's max, up to f16 rounding
  const ds = (2 ** -8 * q1 * kmax) / Math.sqrt(D);
  return (Math.exp(2 * ds) - 1 + 2 ** -8) * vmax;
}

/**
 * Per-element round-trip bound of affine groups over the quantized rows [0, quantized) of x [T, W] (the exact rows
 * get 0): half a step s/2, plus the f16 storage of s and z, (L·s + |min|)·2^-11.
 */
function affineBound(x: Float32Array, T: number, shape: CacheShape, axis: 'token' | 'channel', bits: number, group: number, quantized: number): Float32Array {
  const W = shape.kvHeads * shape.headDim;
  const L = 2 ** bits - 1;
  const out = new Float32Array(T * W);
  const members = (g: number, c: number): number[] => {
    const idx: number[] = [];
    if (axis === 'token') for (let j = 0; j < group; j++) idx.push(g * W + c * group + j);
    else for (let j = 0; j < group; j++) idx.push((g * group + j) * W + c);
    return idx;
  };
  const [gRows, gCols] = axis === 'token' ? [quantized, W / group] : [quantized / group, W];
  for (let g = 0; g < gRows; g++) {
    for (let c = 0; c < gCols; c++) {
      const idx = members(g, c);
      const vals = idx.map((i) => x[i]!);
      const min = Math.min(...vals);
      const s = (Math.max(...vals) - min) / L;
      const b = s / 2 + (L * s + Math.abs(min)) * 2 ** -11 + 1e-7;
      for (const i of idx) out[i] = b;
    }
  }
  return out;
}

/** Per-element fp8 bound over the quantized rows: 2^-4·|x| (normal), 2^-10·s below the subnormal edge; exact rows 0. */
function fp8Bound(x: Float32Array, T: number, shape: CacheShape, quantized: number): Float32Array {
  const { kvHeads: H, headDim: D } = shape;
  const out = new Float32Array(T * H * D);
  for (let t = 0; t < quantized; t++) {
    for (let h = 0; h < H; h++) {
      let amax = 0;
      for (let d = 0; d < D; d++) amax = Math.max(amax, Math.abs(x[(t * H + h) * D + d]!));
      const s = amax / 448;
      for (let d = 0; d < D; d++) {
        const i = (t * H + h) * D + d;
        out[i] = 2 ** -4 * Math.abs(x[i]!) + 2 ** -10 * s + 1e-7 * s;
      }
    }
  }
  return out;
}
