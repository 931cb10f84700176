/**
 * The CUDA attention kernels (kernels/attention_prefill.cu, kernels/attention_decode.cu) against the CPU reference
 * `attentionF32` (f64 accumulation) on random bf16 inputs drawn fresh each run. Skipped where no GPU is found.
 *
 * Every case also checks what a wrong index would break: key/value rows past the last visible key are NaN (a read
 * of one poisons the output), and the output sits between guard rows of NaN bits that must stay untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { CudaContext } from '../../src/core/backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../../src/core/backend/cuda/cuda-tensor.js';
import { cudaAvailable } from '../../src/core/backend/cuda/driver.js';
import {
  decodeAttention,
  launchAttention,
  prefillAttention,
  usesDecodeKernel,
  type AttentionLaunchShape,
  type AttentionTensors,
  type DecodeOptions,
} from '../../src/core/backend/cuda/ops/attention.js';
import { downloadFrom, fillBytes, uploadTo } from '../../src/core/backend/cuda/ops/copies.js';
import { bf16ToF32, f32ToBf16 } from '../../src/core/tensor/dtype.js';
import { compareArrays } from '../helpers/compare.js';
import { fakeTensor } from './gpu-helpers.js';

// Tolerance, bf16 outputs: |gpu − ref| ≤ ATOL + |ref|·BF16_EPS.
//   BF16_EPS = 2^-7, bf16's machine epsilon: the final rounding to bf16 costs ≤ 2^-9·|ref|.
//   ATOL = 2^-8: P is rounded to bf16 before P·V (as in FlashAttention), ≤ 2^-9 relative per weight, so
//   ≤ 2^-9·max|v| = 2^-9 absolute with |v| ≤ 1; twice that for margin.
const BF16_EPS = 2 ** -7;
const ATOL = 2 ** -8;
const BF16_NAN = 0x7fc0;
const GUARD = 0xffff; // NaN bits, also what memset(0xff) writes

const haveGpu = cudaAvailable();
if (!haveGpu) console.warn('skipping GPU attention tests: no CUDA device');

/** mulberry32: a seeded generator, so a failing draw can be replayed from the seed in the message. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** bf16 bits of `n` uniform values in [−amp, amp] (never zero tensors), and their f32 values. */
function randomBf16(n: number, amp: number, next: () => number): { bits: Uint16Array; values: Float32Array } {
  const bits = new Uint16Array(n);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    bits[i] = f32ToBf16((2 * next() - 1) * amp);
    values[i] = bf16ToF32(bits[i]!);
  }
  return { bits, values };
}

interface Inputs {
  shape: AttentionLaunchShape;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  tensors: AttentionTensors;
  /** the output between one guard row before and one after: bf16 [Tq + 2, H_q·D] */
  outAll: CudaTensor;
  guardElems: number;
  owned: CudaTensor[];
}

type Kernel = 'prefill' | 'decode' | 'auto';

describe.skipIf(!haveGpu)('CUDA attention vs CPU reference', () => {
  let ctx: CudaContext;
  const seed = (Math.random() * 2 ** 32) >>> 0;
  const next = rng(seed);

  beforeAll(() => {
    ctx = new CudaContext(0);
  });
  afterAll(() => ctx?.dispose());

  function upload(bits: Uint16Array): CudaTensor {
    const t = emptyTensor(ctx, [bits.length], 'bf16');
    uploadTo(ctx, t, bits);
    return t;
  }

  /**
   * Random q [Tq, H_q·D] with scores of standard deviation ≈ 2 (q in ±6, k in ±1: sharp enough that one key more or
   * less changes the output), k/v [kvLength + 3, H_kv·D] with NaN in every row past the last visible key.
   */
  function makeInputs(shape: AttentionLaunchShape): Inputs {
    const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength } = shape;
    const visible = Math.min(kvLength, qStart + Tq);
    const capacity = kvLength + 3;
    const q = randomBf16(Tq * Hq * D, 6, next);
    const k = randomBf16(capacity * Hkv * D, 1, next);
    const v = randomBf16(capacity * Hkv * D, 1, next);
    for (const t of [k, v]) {
      t.bits.fill(BF16_NAN, visible * Hkv * D);
      t.values.fill(NaN, visible * Hkv * D);
    }
    const guardElems = Hq * D; // one guard row before and after the output
    const outAll = emptyTensor(ctx, [Tq + 2, guardElems], 'bf16');
    fillBytes(ctx, outAll, 0xff);
    const owned = [upload(q.bits), upload(k.bits), upload(v.bits), outAll];
    const tensors = { q: owned[0]!, k: owned[1]!, v: owned[2]!, out: outAll.rows(1, Tq) };
    return { shape, q: q.values, k: k.values, v: v.values, tensors, outAll, guardElems, owned };
  }

  /** The output as f32, after checking that both guard rows are intact. */
  function readOutput(inp: Inputs): Float32Array {
    const all = downloadFrom(ctx, inp.outAll, new Uint16Array(inp.outAll.numel));
    const n = all.length - 2 * inp.guardElems;
    const guards = [...all.subarray(0, inp.guardElems), ...all.subarray(inp.guardElems + n)];
    const touched = guards.findIndex((g) => g !== GUARD);
    expect(touched, `a guard element was overwritten (index ${touched})`).toBe(-1);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = bf16ToF32(all[inp.guardElems + i]!);
    return out;
  }

  function run(kernel: Kernel, inp: Inputs, options: DecodeOptions): void {
    if (kernel === 'prefill') prefillAttention(ctx, inp.tensors, inp.shape);
    else if (kernel === 'decode') decodeAttention(ctx, inp.tensors, inp.shape, options);
    else launchAttention(ctx, inp.tensors, inp.shape);
  }

  function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
    const r = compareArrays(actual, expected, ATOL, BF16_EPS);
    expect(r.ok, `${what} (seed ${seed}): ${r.report}`).toBe(true);
  }

  function checkCase(kernel: Kernel, shape: AttentionLaunchShape, options: DecodeOptions = {}): void {
    const before = ctx.allocator.memory().bytesInUse;
    const inp = makeInputs(shape);
    try {
      run(kernel, inp, options);
      const out = readOutput(inp);
      expectClose(out, attentionF32(inp.q, inp.k, inp.v, shape), `${kernel} ${JSON.stringify(shape)}`);
    } finally {
      for (const t of inp.owned) t.dispose();
    }
    expect(ctx.allocator.memory().bytesInUse, 'device memory leaked').toBe(before);
  }

  const cases: AttentionLaunchShape[] = [];
  for (const headDim of [64, 128])
    for (const ratio of [1, 2, 4])
      for (const queryRows of [1, 2, 17, 128, 300])
        for (const qStart of [0, 1531]) {
          const kvLength = qStart + queryRows + (queryRows % 2) * 5; // odd Tq: a few valid rows past the last query
          cases.push({ queryRows, queryHeads: 2 * ratio, kvHeads: 2, headDim, qStart, kvLength });
        }
  const name = (s: AttentionLaunchShape): string =>
    `D ${s.headDim}, H_q/H_kv ${s.queryHeads}/${s.kvHeads}, Tq ${s.queryRows}, qStart ${s.qStart}, kvLength ${s.kvLength}`;

  it.each(cases.map((s) => [name(s), s] as const))('prefill kernel: %s', (_, shape) => checkCase('prefill', shape));

  it.each(cases.filter((s) => s.queryRows <= 17).map((s) => [name(s), s] as const))('decode kernel: %s', (_, shape) =>
    checkCase('decode', shape),
  );

  it('decode kernel: a few thousand keys, Llama-3.1-8B heads', () => {
    for (const headDim of [64, 128]) checkCase('auto', { queryRows: 1, queryHeads: 32, kvHeads: 8, headDim, qStart: 3000, kvLength: 3001 });
  });

  it('decode kernel: any multiple of 32 keys per warp', () => {
    for (const headDim of [64, 128])
      for (const unitKeys of [32, 96, 2048]) {
        const shape = { queryRows: 2, queryHeads: 8, kvHeads: 2, headDim, qStart: 1531, kvLength: 1533 };
        checkCase('decode', shape, { unitKeys });
      }
  });

  it('launchAttention picks decode for a few rows per kv head and prefill otherwise', () => {
    const s = { queryHeads: 32, kvHeads: 8, headDim: 128, qStart: 0, kvLength: 300 };
    expect(usesDecodeKernel({ ...s, queryRows: 1 })).toBe(true);
    expect(usesDecodeKernel({ ...s, queryRows: 8 })).toBe(true);
    expect(usesDecodeKernel({ ...s, queryRows: 9 })).toBe(false);
    checkCase('auto', { ...s, queryRows: 8 });
    checkCase('auto', { ...s, queryRows: 300 });
  });

  it('prefill kernel: T = 8192, checked on sampled rows', () => {
    const T = 8192;
    const shape = { queryRows: T, queryHeads: 8, kvHeads: 2, headDim: 128, qStart: 0, kvLength: T };
    const inp = makeInputs(shape);
    try {
      prefillAttention(ctx, inp.tensors, shape);
      const out = readOutput(inp);
      const width = shape.queryHeads * shape.headDim;
      const rows = [0, 1, 63, 64, 127, 128, 129, 4095, 4096, T - 2, T - 1];
      for (let i = 0; i < 12; i++) rows.push(Math.floor(next() * T));
      for (const row of rows) {
        const qRow = inp.q.subarray(row * width, (row + 1) * width);
        const ref = attentionF32(qRow, inp.k, inp.v, { ...shape, qStart: row, kvLength: row + 1 });
        expectClose(out.subarray(row * width, (row + 1) * width), ref, `prefill T ${T}, row ${row}`);
      }
      const nans = out.reduce((n, x) => n + (Number.isNaN(x) ? 1 : 0), 0);
      expect(nans, 'unwritten or NaN outputs').toBe(0);
    } finally {
      for (const t of inp.owned) t.dispose();
    }
  });

  it('decode kernel: T = 8192 context, all rows', () => {
    for (const headDim of [64, 128]) checkCase('decode', { queryRows: 1, queryHeads: 32, kvHeads: 8, headDim, qStart: 8191, kvLength: 8192 });
  });

  it('decode kernel with device-side lengths, captured once in a CUDA graph and replayed as the cache grows', () => {
    const maxKv = 8192;
    const shape = { queryRows: 1, queryHeads: 32, kvHeads: 8, headDim: 128, qStart: maxKv - 1, kvLength: maxKv };
    const inp = makeInputs(shape);
    const lengths = emptyTensor(ctx, [2], 'i32');
    const setLengths = (kvLength: number): void => uploadTo(ctx, lengths, new Int32Array([kvLength - 1, kvLength]));
    try {
      setLengths(maxKv);
      decodeAttention(ctx, inp.tensors, shape, { lengths, maxKvLength: maxKv }); // loads the module first
      const { graph } = ctx.capture(() => decodeAttention(ctx, inp.tensors, shape, { lengths, maxKvLength: maxKv }));
      try {
        for (const kvLength of [1, 100, 4097, maxKv]) {
          setLengths(kvLength);
          graph.replay();
          const ref = attentionF32(inp.q, inp.k, inp.v, { ...shape, qStart: kvLength - 1, kvLength });
          expectClose(readOutput(inp), ref, `graph replay at kvLength ${kvLength}`);
        }
      } finally {
        graph.dispose();
      }
    } finally {
      lengths.dispose();
      for (const t of inp.owned) t.dispose();
    }
  });

  it('the NVRTC fallback compiles and loads both kernel files', () => {
    const saved = process.env['COMMVQ_KERNELS'];
    process.env['COMMVQ_KERNELS'] = 'nvrtc';
    const other = new CudaContext(0);
    try {
      expect(other.kernel('attention_prefill', 'attention_prefill_d128').handle).not.toBe(0n);
      expect(other.kernel('attention_decode', 'attention_decode_split_d64').handle).not.toBe(0n);
    } finally {
      other.dispose();
      if (saved === undefined) delete process.env['COMMVQ_KERNELS'];
      else process.env['COMMVQ_KERNELS'] = saved;
    }
  });

  it('launchers reject unsupported shapes with a CommvqError', () => {
    const t = (at: bigint) => fakeTensor(at, [1 << 16], 'bf16'); // never read: every call below is refused
    const p = { q: t(256n), k: t(512n), v: t(768n), out: t(1024n) };
    const s = { queryRows: 4, queryHeads: 8, kvHeads: 2, headDim: 128, qStart: 10, kvLength: 14 };
    expect(() => prefillAttention(ctx, p, { ...s, headDim: 96 })).toThrow(/head dim 96/);
    expect(() => prefillAttention(ctx, p, { ...s, kvHeads: 3 })).toThrow(/not a multiple/);
    expect(() => decodeAttention(ctx, p, { ...s, kvLength: 13 })).toThrow(/kvLength 13/);
    expect(() => decodeAttention(ctx, { ...p, q: t(8n) }, s)).toThrow(/16-byte aligned/);
  });
});
