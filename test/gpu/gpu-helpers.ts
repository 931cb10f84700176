/**
 * Helpers of the GPU-vs-CPU tests: a seeded generator (a fresh seed each run, printed in every failure message so a
 * failure can be replayed with COMMVQ_TEST_SEED), bf16 rounding of inputs, an elementwise comparison that takes a
 * bound per element and reports the largest error and the first mismatches, and the low-level access of tests that pin
 * a launcher's arguments (`addressOf`, `fakeTensor`).
 */
import { asCuda, CudaTensor } from '../../src/core/backend/cuda/cuda-tensor.js';
import { bf16ToF32, bytesPerElement, f32ToBf16, type DType } from '../../src/core/tensor/dtype.js';
import { numel } from '../../src/core/tensor/shape.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';

export const SEED = Number(process.env['COMMVQ_TEST_SEED'] ?? Math.floor(Math.random() * 2 ** 31));

/** bf16 keeps 8 significant bits: one rounding changes a value by at most 2^-8 of it (relative). */
export const BF16_EPS = 2 ** -8;

/** mulberry32: small, fast, good enough for test inputs. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  normal(): number {
    return Math.sqrt(-2 * Math.log(1 - this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** n values N(0, scale²), rounded to bf16 so both backends start from identical inputs; never all zeros. */
export function randomBf16(rng: Rng, n: number, scale = 1, offset = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bf16ToF32(f32ToBf16(offset + scale * rng.normal()));
  return out;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Indices of NaN/Inf values (at most 5) — empty when all are finite. */
export function nonFinite(a: ArrayLike<number>): number[] {
  const bad: number[] = [];
  for (let i = 0; i < a.length && bad.length < 5; i++) if (!Number.isFinite(a[i]!)) bad.push(i);
  return bad;
}

/**
 * Checks |got − want| ≤ bound(i) for every element; the message names the op, the seed, the largest error and the
 * first mismatches. `bound` is typically atol + |want|·eps(dtype).
 */
export function checkClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, bound: (i: number) => number): string | null {
  if (got.length !== want.length) return `${what}: length ${got.length} != ${want.length}`;
  const bad: string[] = [];
  let worst = 0;
  let worstAt = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= worst)) {
      worst = Number.isNaN(err) ? Infinity : err;
      worstAt = i;
    }
    if (!(err <= bound(i)) && bad.length < 5) bad.push(`[${i}] got ${got[i]}, want ${want[i]} (bound ${bound(i).toExponential(2)})`);
  }
  if (bad.length === 0) return null;
  return `${what} (seed ${SEED}): max |err| ${worst.toExponential(3)} at [${worstAt}]; first mismatches: ${bad.join('; ')}`;
}

/** `atol + |want|·eps` as a bound function. */
export function relBound(want: ArrayLike<number>, atol: number, eps: number): (i: number) => number {
  return (i) => atol + Math.abs(want[i]!) * eps;
}

/** The device address of a CUDA tensor: for tests that check the addresses a launcher passes to its kernel. */
export function addressOf(t: Tensor): bigint {
  return asCuda(t, t.device, 'addressOf').ptr;
}

/**
 * A CUDA tensor at address `ptr` that owns no memory: an argument of launch-plan tests with a fake context, whose
 * kernels never run. `dispose()` frees nothing.
 */
export function fakeTensor(ptr: bigint, shape: number[], dtype: DType, device = 'cuda:0'): CudaTensor {
  return new CudaTensor(shape, dtype, device, { ptr, bytes: numel(shape) * bytesPerElement(dtype), free: () => undefined });
}
