/**
 * The CUDA backend's machinery beyond single ops: seeded random fills, CUDA graph capture and replay, event timing,
 * allocator accounting (no leaks), the NVRTC fallback, and device selection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../../src/core/backend/create-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { CommvqError } from '../../src/core/errors.js';
import { ropeTable } from '../../src/core/model/rope.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { nonFinite, randomBf16, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

describe.skipIf(gpu)('without a GPU', () => {
  it('cudaAvailable() is false, auto picks the CPU, and cuda is a clear CommvqError', async () => {
    expect(cudaAvailable()).toBe(false);
    expect((await createBackend('auto')).device).toBe('cpu');
    await expect(createBackend('cuda')).rejects.toThrow(CommvqError);
  });
});

describe.skipIf(!gpu)(`CudaBackend runtime (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let cuda: CudaBackend;
  const rng = new Rng(SEED);

  beforeAll(() => {
    cuda = CudaBackend.create(0);
  });
  afterAll(() => cuda?.dispose());

  it('reports the device and picks it for auto and cuda:0; a missing ordinal is a CommvqError', async () => {
    expect(cuda.device).toBe('cuda:0');
    expect(cuda.activationDType).toBe('bf16');
    expect(cuda.ctx.info.smCount).toBeGreaterThan(0);
    const auto = await createBackend('auto');
    expect(auto.device).toBe('cuda:0');
    (auto as CudaBackend).dispose();
    expect(() => CudaBackend.create(999)).toThrow(CommvqError);
  });

  it('fills seeded random tensors on the GPU: deterministic, finite, with the asked-for statistics', () => {
    const n = 1 << 20;
    for (const dtype of ['f32', 'bf16'] as const) {
      const a = cuda.randomTensor([n], dtype, { seed: SEED, mean: 0.5, std: 2 });
      const b = cuda.randomTensor([n], dtype, { seed: SEED, mean: 0.5, std: 2 });
      const c = cuda.randomTensor([n], dtype, { seed: SEED + 1, mean: 0.5, std: 2 });
      const u = cuda.randomTensor([n], dtype, { seed: SEED, distribution: 'uniform', low: -3, high: 5 });
      const va = cuda.toFloat32(a);
      expect(nonFinite(va)).toEqual([]);
      expect(Array.from(cuda.toHost(b))).toEqual(Array.from(cuda.toHost(a)));
      expect(cuda.toFloat32(c).some((v, i) => v !== va[i])).toBe(true);
      const mean = va.reduce((s, v) => s + v, 0) / n;
      const std = Math.sqrt(va.reduce((s, v) => s + (v - mean) ** 2, 0) / n);
      expect(Math.abs(mean - 0.5)).toBeLessThan((5 * 2) / Math.sqrt(n));
      expect(Math.abs(std - 2)).toBeLessThan(0.02);
      const vu = cuda.toFloat32(u);
      expect(vu.every((v) => v >= -3 && v <= 5)).toBe(true);
      expect(Math.abs(vu.reduce((s, v) => s + v, 0) / n - 1)).toBeLessThan(0.02);
      for (const t of [a, b, c, u]) t.dispose();
    }
  });

  it('captures a graph, replays it with inputs updated in place, and frees its memory on dispose', () => {
    const [T, F] = [4, 256];
    const x = cuda.fromArray(randomBf16(rng, T * F), [T, F], 'bf16');
    const r = cuda.fromArray(randomBf16(rng, T * F), [T, F], 'bf16');
    const w = cuda.fromArray(randomBf16(rng, F, 0.2, 1), [F], 'bf16');
    const wq = cuda.fromArray(randomBf16(rng, F * F, 0.05), [F, F], 'bf16');
    const table = ropeTable({ type: 'default', theta: 10000 }, 64);
    const positions = cuda.fromArray([5, 6, 7, 8], [T], 'i32');
    const step = (): Tensor => {
      const h = cuda.add(x, r);
      const n = cuda.rmsNorm(h, w, 1e-5);
      const q = cuda.linear(n, wq);
      const y = cuda.rope(q, positions, table);
      for (const t of [h, n, q]) t.dispose();
      return y;
    };
    const direct = (): number[] => {
      const y = step();
      const v = Array.from(cuda.toHost(y));
      y.dispose();
      return v;
    };
    step().dispose(); // warm up: kernels loaded, GEMM plan made, blocks cached
    const before = cuda.memory().bytesInUse;
    const { graph, result } = cuda.captureGraph(step);
    graph.replay();
    expect(Array.from(cuda.toHost(result))).toEqual(direct());
    const newX = cuda.fromArray(randomBf16(rng, T * F), [T, F], 'bf16');
    cuda.writeRows(x, 0, newX);
    cuda.upload(positions, [100, 2000, 30000, 131000]);
    newX.dispose();
    graph.replay();
    expect(Array.from(cuda.toHost(result))).toEqual(direct());
    const ms = cuda.timeMs(() => {
      for (let i = 0; i < 10; i++) graph.replay();
    });
    expect(ms).toBeGreaterThan(0);
    graph.dispose();
    result.dispose();
    expect(cuda.memory().bytesInUse).toBe(before);
    expect(() => cuda.captureGraph(() => cuda.upload(positions, [1, 2, 3, 4]))).toThrow(CommvqError); // host data
    for (const t of [x, r, w, wq, positions]) t.dispose();
  });

  const LEAK_ROPE = ropeTable({ type: 'default', theta: 10000 }, 32); // its frequencies are uploaded once, at warm-up
  it('gives every byte back: bytesInUse returns to its start after the tensors are disposed', () => {
    const run = (): void => {
      const x = cuda.fromArray(randomBf16(rng, 3 * 96), [3, 96], 'bf16');
      const w = cuda.fromArray(randomBf16(rng, 96 * 96, 0.1), [96, 96], 'f32');
      const z = cuda.zeros([96], 'bf16');
      const positions = cuda.fromArray([1, 2, 3], [3], 'i32');
      const ids = cuda.fromArray([0, 5], [2], 'i32');
      const outs = [
        cuda.linear(x, w), cuda.add(x, x), cuda.swiglu(x, x), cuda.rmsNorm(x, z, 1e-5), cuda.rope(x, positions, LEAK_ROPE),
        cuda.cast(x, 'f16'), cuda.sliceRows(x, 1, 3), cuda.embedding(w, ids), cuda.softmax(x),
      ];
      cuda.argmaxRows(x);
      for (const t of [x, w, z, positions, ids, ...outs]) t.dispose();
    };
    run(); // warm up (cuBLASLt workspace, staging ring)
    const start = cuda.memory();
    run();
    run();
    expect(cuda.memory().bytesInUse).toBe(start.bytesInUse);
    expect(cuda.memory().peakBytes).toBeGreaterThanOrEqual(start.bytesInUse);
  });

  it('compiles kernels at run time with NVRTC when no fatbin is used, with the same results', () => {
    const x = randomBf16(rng, 5 * 128);
    const positions = Int32Array.from([0, 1, 4095, 65536, 131071]);
    const table = ropeTable({ type: 'default', theta: 500000 }, 128);
    const run = (b: CudaBackend): number[] => {
      const t = b.fromArray(x, [5, 128], 'bf16');
      const sum = b.add(t, t);
      const pos = b.fromArray(positions, [positions.length], 'i32');
      const y = b.rope(sum, pos, table);
      const v = Array.from(b.toHost(y));
      for (const u of [t, sum, pos, y]) u.dispose();
      return v;
    };
    process.env['COMMVQ_KERNELS'] = 'nvrtc';
    let nvrtc: CudaBackend | undefined;
    try {
      nvrtc = CudaBackend.create(0);
      expect(run(nvrtc)).toEqual(run(cuda));
    } finally {
      delete process.env['COMMVQ_KERNELS'];
      nvrtc?.dispose();
    }
  });
});
