/**
 * Every op of CudaBackend against CpuBackend (the reference) on fresh random inputs, several shapes each, odd sizes
 * included. Inputs are rounded to bf16 first so both backends see identical values; the CPU computes in f32, the GPU
 * in bf16 storage with f32 math, so each bound is `atol + |ref|·k·eps(bf16)` with k the number of bf16 roundings the
 * GPU op makes (written next to each test). Every GPU output is checked for NaN/Inf.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { CommvqError } from '../../src/core/errors.js';
import { ropeTable } from '../../src/core/model/rope.js';
import { DTYPES, toFloat32Array, type DType } from '../../src/core/tensor/dtype.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { BF16_EPS, checkClose, maxAbs, nonFinite, randomBf16, relBound, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

describe.skipIf(!gpu)(`CudaBackend ops vs CpuBackend (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let cuda: CudaBackend;
  const cpu = new CpuBackend();
  const rng = new Rng(SEED);
  const held: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (held.push(t), t);

  beforeAll(() => {
    cuda = CudaBackend.create(0);
  });
  afterAll(() => {
    for (const t of held.splice(0)) t.dispose();
    cuda?.dispose();
  });

  /** The same bf16-exact values on both backends: f32 on the CPU, `dtype` (bf16) on the GPU. */
  const pair = (values: Float32Array, shape: number[], dtype: DType = 'bf16'): [Tensor, Tensor] => [
    keep(cpu.fromArray(values, shape, 'f32')),
    keep(cuda.fromArray(values, shape, dtype)),
  ];
  /** The GPU result as f32, after checking it holds no NaN/Inf. */
  const read = (t: Tensor): Float32Array => {
    const v = cuda.toFloat32(keep(t));
    expect(nonFinite(v), `NaN/Inf in GPU output (seed ${SEED})`).toEqual([]);
    return v;
  };
  const ok = (msg: string | null): void => expect(msg, msg ?? '').toBeNull();

  it('round-trips every dtype through fromArray, fromBytes, toHost and zeros', () => {
    for (const dtype of DTYPES) {
      const n = 37;
      const values = Array.from({ length: n }, () =>
        dtype === 'u8' ? rng.int(256)
        : dtype === 'u16' ? rng.int(65536)
        : dtype === 'i32' ? rng.int(2 ** 31) - 2 ** 30
        : rng.normal() * 100,
      );
      const ref = cpu.toHost(cpu.fromArray(values, [n], dtype));
      expect(Array.from(cuda.toHost(keep(cuda.fromArray(values, [n], dtype)))), dtype).toEqual(Array.from(ref));
      const bytes = new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength);
      expect(Array.from(cuda.toHost(keep(cuda.fromBytes(bytes, [n], dtype)))), dtype).toEqual(Array.from(ref));
      expect(Array.from(cuda.toFloat32(keep(cuda.zeros([3, 5], dtype))))).toEqual(new Array(15).fill(0));
    }
  });

  it('writeRows and sliceRows copy exactly the rows asked for (neighbours untouched), with float casts', () => {
    for (const [R, F, row, n] of [[10, 7, 3, 4], [64, 256, 0, 64], [5, 1, 4, 1], [33, 130, 17, 9]] as const) {
      const dstVals = randomBf16(rng, R * F);
      const srcVals = randomBf16(rng, n * F);
      for (const srcType of ['bf16', 'f32'] as const) {
        const [cd, gd] = pair(dstVals, [R, F]);
        const [cs] = pair(srcVals, [n, F]);
        const gs = keep(cuda.fromArray(srcVals, [n, F], srcType));
        cpu.writeRows(cd, row, cs);
        cuda.writeRows(gd, row, gs);
        expect(Array.from(read(gd)), `writeRows ${srcType} R=${R} F=${F} row=${row} n=${n}`).toEqual(Array.from(cpu.toFloat32(cd)));
        const start = Math.floor(row / 2);
        expect(Array.from(read(cuda.sliceRows(gd, start, row + n))), 'sliceRows').toEqual(
          Array.from(cpu.toFloat32(keep(cpu.sliceRows(cd, start, row + n)))),
        );
      }
    }
  });

  it('embedding gathers rows exactly (ids read on the device; an id outside the vocabulary gives a zero row)', () => {
    for (const [V, F, T] of [[50, 64, 1], [37, 33, 7], [300, 1024, 130]] as const) {
      const [ct, gt] = pair(randomBf16(rng, V * F), [V, F]);
      const ids = Int32Array.from({ length: T }, (_, i) => (i === 0 ? V - 1 : i === 1 ? 0 : rng.int(V)));
      const want = Array.from(cpu.toFloat32(keep(cpu.embedding(ct, keep(cpu.fromArray(ids, [T], 'i32'))))));
      expect(Array.from(read(cuda.embedding(gt, keep(cuda.fromArray(ids, [T], 'i32'))))), `V=${V} F=${F} T=${T}`).toEqual(want);
      expect(Array.from(read(cuda.embedding(gt, keep(cuda.fromArray([V], [1], 'i32')))))).toEqual(new Array(F).fill(0));
    }
  });

  it('upload and scatterRows write exactly the rows the device-side indices name, with float casts', () => {
    for (const [R, F, n, dtype] of [[10, 64, 1, 'bf16'], [37, 24, 5, 'bf16'], [16, 7, 3, 'f32']] as const) {
      const init = randomBf16(rng, R * F);
      const [cd, gd] = pair(init, [R, F], dtype);
      const src = randomBf16(rng, n * F);
      const [cs, gs] = pair(src, [n, F], 'f32'); // f32 rows into a bf16 cache: a cast on the way
      const rows = Int32Array.from({ length: n }, (_, i) => (i === 0 ? R - 1 : (i * 7) % (R - 1)));
      const ci = keep(cpu.zeros([n], 'i32'));
      const gi = keep(cuda.zeros([n], 'i32'));
      cpu.upload(ci, rows);
      cuda.upload(gi, rows);
      expect(Array.from(cuda.toHost(gi))).toEqual(Array.from(rows));
      cpu.scatterRows(cd, ci, cs);
      cuda.scatterRows(gd, gi, gs);
      expect(Array.from(cuda.toFloat32(gd)), `R=${R} F=${F} n=${n} ${dtype}`).toEqual(Array.from(cpu.toFloat32(cd)));
    }
  });

  it('rmsNorm: HF order (normalize in f32, round, times weight, round): 2 roundings → 2.5·eps', () => {
    for (const [T, F, eps] of [[1, 64, 1e-5], [3, 33, 1e-6], [7, 4096, 1e-5], [130, 1000, 1e-6], [2, 8, 1e-5]] as const) {
      const [cx, gx] = pair(randomBf16(rng, T * F, 2, 0.5), [T, F]);
      const [cw, gw] = pair(randomBf16(rng, F, 0.3, 1), [F]);
      const want = cpu.toFloat32(keep(cpu.rmsNorm(cx, cw, eps)));
      ok(checkClose(`rmsNorm T=${T} F=${F}`, read(cuda.rmsNorm(gx, gw, eps)), want, relBound(want, 1e-6, 2.5 * BF16_EPS)));
    }
  });

  describe.each([
    ['cuBLASLt', {}],
    ['fallback GEMM kernel', { COMMVQ_GEMM: 'fallback' }],
  ] as const)('linear through %s', (_name, env) => {
    let backend: CudaBackend;
    beforeAll(() => {
      Object.assign(process.env, env);
      backend = Object.keys(env).length ? CudaBackend.create(0) : cuda;
      backend.linear(keep(backend.fromArray([1], [1, 1], 'bf16')), keep(backend.fromArray([1], [1, 1], 'bf16'))).dispose();
      for (const key of Object.keys(env)) delete process.env[key];
    });
    afterAll(() => {
      if (backend !== cuda) backend.dispose();
    });

    // bound: one bf16 rounding of the result (eps·|ref|), plus f32 accumulation error ≤ 2^-14·Σ_k|x_k·w_k|,
    // plus with a bias one more rounding (eps·(|ref| + |bias|)).
    it.each([
      [1, 64, 96, false], [7, 33, 17, true], [5, 256, 1, false], [33, 200, 130, true],
      [64, 1024, 512, false], [1, 4096, 1024, true], [130, 512, 1000, false],
    ] as const)('T=%i in=%i out=%i bias=%s', (T, inF, outF, withBias) => {
      const x = randomBf16(rng, T * inF);
      const w = randomBf16(rng, outF * inF, 0.05);
      const b = randomBf16(rng, outF, 0.5);
      const cx = keep(cpu.fromArray(x, [T, inF], 'f32'));
      const cw = keep(cpu.fromArray(w, [outF, inF], 'f32'));
      const cb = keep(cpu.fromArray(b, [outF], 'f32'));
      const want = cpu.toFloat32(keep(cpu.linear(cx, cw, withBias ? cb : undefined)));
      const absX = keep(cpu.fromArray(x.map(Math.abs), [T, inF], 'f32'));
      const absW = keep(cpu.fromArray(w.map(Math.abs), [outF, inF], 'f32'));
      const sumAbs = cpu.toFloat32(keep(cpu.linear(absX, absW))); // Σ_k |x_k·w_k|
      const gx = keep(backend.fromArray(x, [T, inF], 'bf16'));
      const gw = keep(backend.fromArray(w, [outF, inF], 'bf16'));
      const gb = withBias ? keep(backend.fromArray(b, [outF], 'bf16')) : undefined;
      const y = keep(backend.linear(gx, gw, gb));
      expect(y.shape).toEqual([T, outF]);
      const got = backend.toFloat32(y);
      expect(nonFinite(got)).toEqual([]);
      const k = withBias ? 2 : 1;
      const biasAt = (i: number): number => (withBias ? Math.abs(b[i % outF]!) : 0);
      const bound = (i: number): number => 1e-6 + k * BF16_EPS * (Math.abs(want[i]!) + biasAt(i)) + 2 ** -14 * sumAbs[i]!;
      ok(checkClose(`linear T=${T} in=${inF} out=${outF}`, got, want, bound));
      // an f32 copy of the same (bf16-exact) weight is cast on the GPU and gives the same bits
      const gw32 = keep(backend.fromArray(w, [outF, inF], 'f32'));
      expect(Array.from(backend.toHost(keep(backend.linear(gx, gw32, gb))))).toEqual(Array.from(backend.toHost(y)));
    });
  });

  it('add: 1 rounding → eps; swiglu: silu rounded, then the product → 2.5·eps', () => {
    for (const shape of [[1], [7], [8], [9], [3, 1000], [5, 4096 + 5], [2, 14336]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const [ca, ga] = pair(randomBf16(rng, n, 3), shape);
      const [cb, gb] = pair(randomBf16(rng, n, 3), shape);
      const sum = cpu.toFloat32(keep(cpu.add(ca, cb)));
      ok(checkClose(`add ${shape}`, read(cuda.add(ga, gb)), sum, relBound(sum, 1e-30, BF16_EPS * 1.0001)));
      const sw = cpu.toFloat32(keep(cpu.swiglu(ca, cb)));
      ok(checkClose(`swiglu ${shape}`, read(cuda.swiglu(ga, gb)), sw, relBound(sw, 1e-6, 2.5 * BF16_EPS)));
    }
  });

  it('rope (default and llama3, positions up to 131072): cos/sin, products and sum rounded to bf16', () => {
    const tables = [
      ropeTable({ type: 'default', theta: 10000 }, 64),
      ropeTable(
        { type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
        128,
      ),
      { ...ropeTable({ type: 'default', theta: 1e6 }, 32), attentionScaling: 0.75 },
    ];
    for (const table of tables) {
      for (const [T, heads] of [[1, 1], [9, 3], [64, 8]] as const) {
        const D = table.headDim;
        const positions = Int32Array.from({ length: T }, (_, i) => (i === 0 ? 131071 : i === 1 ? 0 : rng.int(131072)));
        const x = randomBf16(rng, T * heads * D);
        const [cx, gx] = pair(x, [T, heads * D]);
        const want = cpu.toFloat32(keep(cpu.rope(cx, keep(cpu.fromArray(positions, [T], 'i32')), table)));
        // out = a·cos − b·sin with a, b the pair: ≤ 2·eps(|a| + |b|) from rounding cos, sin and the products, plus
        // eps·|out| from rounding the sum
        const bound = (i: number): number => {
          const c = i % D;
          const base = i - c;
          const pairSum = Math.abs(x[base + (c % (D / 2))]!) + Math.abs(x[base + (c % (D / 2)) + D / 2]!);
          return 1e-6 + 2.1 * BF16_EPS * pairSum * Math.max(1, table.attentionScaling) + BF16_EPS * Math.abs(want[i]!);
        };
        ok(checkClose(`rope D=${D} T=${T} heads=${heads}`, read(cuda.rope(gx, keep(cuda.fromArray(positions, [T], 'i32')), table)), want, bound));
      }
    }
  });

  it('argmaxRows matches exactly (first index on ties), for f32 and bf16 rows', () => {
    for (const [R, F] of [[1, 1], [3, 7], [5, 32000], [2, 128256]] as const) {
      const values = randomBf16(rng, R * F, 4);
      values[F - 1] = 100; // a tie between the last and a middle index of row 0: the first must win
      values[Math.floor(F / 2)] = 100;
      const want = Array.from(cpu.argmaxRows(keep(cpu.fromArray(values, [R, F], 'f32'))));
      for (const dtype of ['f32', 'bf16'] as const) {
        expect(Array.from(cuda.argmaxRows(keep(cuda.fromArray(values, [R, F], dtype)))), `${dtype} R=${R} F=${F}`).toEqual(want);
      }
    }
  });

  it('cast between f32, bf16 and f16 rounds like the CPU (nearest even; overflow → inf; NaN stays NaN)', () => {
    const specials = [
      0, -0, 1, -1, 65504, 70000, -70000, 1e-7, 6e-8, 1e-40, 3.4e38, Infinity, -Infinity, NaN, 1 + 2 ** -8, 1 + 3 * 2 ** -8,
    ];
    const values = Float32Array.from([...specials, ...Array.from({ length: 1000 }, () => rng.normal() * 10 ** (rng.int(9) - 4))]);
    for (const from of ['f32', 'bf16', 'f16'] as const) {
      for (const to of ['f32', 'bf16', 'f16'] as const) {
        const want = cpu.toHost(keep(cpu.cast(keep(cpu.fromArray(values, [values.length], from)), to)));
        const got = cuda.toHost(keep(cuda.cast(keep(cuda.fromArray(values, [values.length], from)), to)));
        const wantF = toFloat32Array(want, to);
        const gotF = toFloat32Array(got, to);
        for (let i = 0; i < values.length; i++) {
          // NaN payloads may differ between the two conversions; NaN-ness may not
          const same = Number.isNaN(wantF[i]!) ? Number.isNaN(gotF[i]!) : got[i] === want[i];
          if (!same) throw new Error(`cast ${from}→${to} [${i}] of ${values[i]} (seed ${SEED}): got ${gotF[i]}, want ${wantF[i]}`);
        }
      }
    }
  });

  it('softmax rows (f32 probabilities, fast exp): 1e-4 relative to a double-precision reference', () => {
    for (const [R, F, temperature] of [[1, 1, 1], [3, 1000, 0.7], [2, 128256, 1.3]] as const) {
      const values = randomBf16(rng, R * F, 3);
      const want = new Float32Array(R * F);
      for (let r = 0; r < R; r++) {
        const row = values.subarray(r * F, (r + 1) * F);
        const m = row.reduce((a, b) => Math.max(a, b), -Infinity);
        let s = 0;
        for (const v of row) s += Math.exp((v - m) / temperature);
        row.forEach((v, c) => (want[r * F + c] = Math.exp((v - m) / temperature) / s));
      }
      for (const dtype of ['f32', 'bf16'] as const) {
        const got = read(cuda.softmax(keep(cuda.fromArray(values, [R, F], dtype)), temperature));
        ok(checkClose(`softmax ${dtype} R=${R} F=${F}`, got, want, relBound(want, 1e-9, 1e-4)));
      }
    }
  });

  it('attention through the attention kernels agrees with the CPU (integration; precise tests in attention.test.ts)', () => {
    const cases = [[1, 99, 100, 4, 2, 64], [37, 0, 37, 4, 1, 128], [5, 60, 65, 8, 2, 128], [200, 0, 200, 2, 2, 64]] as const;
    for (const [Tq, qStart, kvLength, Hq, Hkv, D] of cases) {
      const q = randomBf16(rng, Tq * Hq * D);
      const kv = randomBf16(rng, (kvLength + 3) * Hkv * D);
      const v = randomBf16(rng, (kvLength + 3) * Hkv * D);
      const [cq, gq] = pair(q, [Tq, Hq * D]);
      const [ck, gk] = pair(kv, [kvLength + 3, Hkv * D]);
      const [cv, gv] = pair(v, [kvLength + 3, Hkv * D]);
      const shape = { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength };
      const want = cpu.toFloat32(keep(cpu.attention(cq, ck, cv, shape)));
      // P is rounded to bf16 inside the kernel (≈ eps·max|v| on a convex combination of v) and the output once
      const vMax = maxAbs(v);
      const got = read(cuda.attention(gq, gk, gv, shape));
      ok(checkClose(`attention Tq=${Tq} kv=${kvLength} D=${D}`, got, want, (i) => 1.5 * BF16_EPS * vMax + BF16_EPS * Math.abs(want[i]!)));
    }
  });
});
