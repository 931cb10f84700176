/**
 * The kernels of the device-resident CommVQ cache against the CPU reference (CommvqCache.encodeBlock/dequantized):
 * the GPU key encoder (src/core/keys/gpu/gpu-encode.ts) against `encodeKeys`, and the pack/dequant launchers
 * (src/core/backend/cuda/ops/commvq-cache.ts, kernels/commvq_pack.cu, kernels/commvq_dequant.cu) against
 * packCodes12/packBits, `decodeKeys` and the value formula, on random inputs drawn fresh each run (seed in every
 * message): head_dim 64 and 128, R 11 and 21, G 1, 2, 8, n 1, 127, 128, 300, rows written at rowStart > 0 of the
 * second sequence of two-sequence arrays whose other rows hold guard bytes that must stay untouched. Argument checks
 * run without a GPU.
 *
 * Tolerances:
 *   codes:   equal to encodeKeys, except near-ties: the GPU ranks centres by f32 distances (the CPU by f64 ones), so
 *            where the two pick different centres at a (token, group)'s first differing stage, the f64 distances of
 *            both centres to the CPU residual must agree within 3e-5·(‖v‖² + ‖C‖²) (f32 sums of 64 pairs and the
 *            α + β + Q split lose ≲ 1e-5 of that scale); later stages of that unit are not compared (their residual
 *            differs), and at most 1% of units may hold such a tie.
 *   norms:   √n2 within 1e-6 relative of the f64 norm (f32 block sum); stored bf16 within one bf16 step (2^-7 rel.) of
 *            the CPU's bf16, and bit-exactly bf16(√n2) of the GPU's own n2.
 *   packing: byte-exact (packCodes12, packBits) and rows outside [rowStart, rowStart + n) untouched.
 *   k̂:      |gpu − cpu| ≤ 2^-8·|cpu| + 4e-6·M, M = n_t·Σ_r (|terms| of the pair component): one bf16 rounding plus
 *            f32 sums of R centres (the GPU rounds 2R times, decodeKeys R times: ≤ 3R·2^-24·M ≤ 3.8e-6·M for R 21).
 *   ρ′:      the reference is the CPU formula on the bf16-rounded E (the device holds only bf16 E), in f64:
 *            |gpu − ref| ≤ (2^-8 + 1e-5)·ref: one bf16 rounding plus the f32 sums of W = b·E and ‖W‖.
 *   v̂:      |gpu − ref| ≤ 2^-8·|ref| + 1e-5·M, M = ρ′·(ls + 1e-6)·Σ_{i set} |E_i,c| (f32 sum of ≤ N_c rows).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import type { CudaContext } from '../../src/core/backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../../src/core/backend/cuda/cuda-tensor.js';
import type { CudaContextLike, CudaKernel, DeviceInfo, KernelArg } from '../../src/core/backend/cuda/kernels.js';
import {
  launchDequantKeys,
  launchDequantValues,
  launchPackKeys,
  launchPackValues,
  packValuesWorkspaceFloats,
} from '../../src/core/backend/cuda/ops/commvq-cache.js';
import { downloadFrom, uploadTo, zeroFill } from '../../src/core/backend/cuda/ops/copies.js';
import { CudaTimer } from '../../src/core/backend/cuda/timing.js';
import { packBits, packCodes12, packedCodeBytes } from '../../src/core/tensor/code-packing.js';
import { CommvqError } from '../../src/core/errors.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { decodeKeys, encodeKeys } from '../../src/core/keys/encoder.js';
import { DeviceKeyTables, encodeChunkTokens, encodeKeysOnDevice } from '../../src/core/keys/gpu/gpu-encode.js';
import { prepareKeys } from '../../src/core/keys/layout.js';
import { subtractCentre } from '../../src/core/keys/distance.js';
import { bf16ToF32, f32ToBf16, type DType } from '../../src/core/tensor/dtype.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { addressOf, BF16_EPS, checkClose, fakeTensor, nonFinite, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

interface Config {
  headDim: number;
  residuals: number;
  groups: number;
  tokens: number;
  rowStart: number;
  codeBits: number;
  keyDType: 'f32' | 'bf16';
}

const CASES: Config[] = [
  { headDim: 64, residuals: 11, groups: 1, tokens: 1, rowStart: 5, codeBits: 128, keyDType: 'f32' },
  { headDim: 64, residuals: 21, groups: 2, tokens: 127, rowStart: 64, codeBits: 256, keyDType: 'bf16' },
  { headDim: 64, residuals: 11, groups: 8, tokens: 128, rowStart: 1, codeBits: 1024, keyDType: 'bf16' },
  { headDim: 128, residuals: 11, groups: 1, tokens: 300, rowStart: 3, codeBits: 192, keyDType: 'f32' },
  { headDim: 128, residuals: 11, groups: 8, tokens: 128, rowStart: 128, codeBits: 1024, keyDType: 'bf16' },
  { headDim: 128, residuals: 21, groups: 8, tokens: 300, rowStart: 129, codeBits: 2048, keyDType: 'bf16' },
  { headDim: 128, residuals: 21, groups: 2, tokens: 1, rowStart: 0, codeBits: 64, keyDType: 'f32' },
];

/** f64 squared distance of PI row v [D] to centre `code` of θ_{r,g} [128, P]. */
function sqDist(theta: Float32Array, P: number, code: number, v: Float32Array): { d: number; c2: number } {
  const A = code >> 6;
  const B = code & 63;
  let d = 0;
  let c2 = 0;
  for (let j = 0; j < P; j++) {
    const re = theta[2 * A * P + j]! - theta[(2 * B + 1) * P + j]!;
    const im = theta[(2 * A + 1) * P + j]! + theta[2 * B * P + j]!;
    d += (v[2 * j]! - re) ** 2 + (v[2 * j + 1]! - im) ** 2;
    c2 += re * re + im * im;
  }
  return { d, c2 };
}

/**
 * Compares GPU codes with CPU codes unit by unit (token, group); at a unit's first differing stage, certifies a
 * near-tie from the CPU residual (see the header). Returns an error message or null, and the number of ties.
 */
function compareCodes(cb: LayerKeyCodebook, rows: Float32Array, cpu: Uint16Array, got: Int32Array, n: number): { msg: string | null; ties: number } {
  const { residuals: R, groups: G, pairs: P } = cb.shape;
  const D = 2 * P;
  let ties = 0;
  for (let t = 0; t < n; t++) {
    for (let g = 0; g < G; g++) {
      for (let r = 0; r < R; r++) {
        const i = (r * G + g) * n + t;
        if (cpu[i] === got[i]) continue;
        ties++;
        const v = prepareKeys(rows.subarray(t * G * D, (t + 1) * G * D), G, D).data[g]!;
        for (let s = 0; s < r; s++) subtractCentre(cb.stage(s, g), 64, P, cpu[(s * G + g) * n + t]!, v, 0);
        const a = sqDist(cb.stage(r, g), P, cpu[i]!, v);
        const b = sqDist(cb.stage(r, g), P, got[i]!, v);
        let v2 = 0;
        for (let k = 0; k < D; k++) v2 += v[k]! ** 2;
        const bound = 3e-5 * (v2 + a.c2);
        if (!(Math.abs(a.d - b.d) <= bound)) {
          return { msg: `codes (seed ${SEED}): token ${t} group ${g} stage ${r}: GPU ${got[i]} (d² ${b.d}) vs CPU ${cpu[i]} (d² ${a.d}), not a near-tie (bound ${bound.toExponential(2)})`, ties };
        }
        break; // later stages of this unit start from another residual
      }
    }
  }
  return { msg: ties <= Math.max(1, 0.01 * n * G) ? null : `codes (seed ${SEED}): ${ties} of ${n * G} units hold near-ties`, ties };
}

describe.skipIf(!gpu)(`CommVQ cache kernels, GPU vs CPU (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let cuda: CudaBackend;
  let ctx: CudaContext;
  const ok = (msg: string | null): void => expect(msg, msg ?? '').toBeNull();
  let tensors: CudaTensor[] = [];
  /** A device tensor of `shape` holding the raw elements `a`. */
  const up = (a: ArrayBufferView, shape: number[], dtype: DType): CudaTensor => {
    const t = emptyTensor(ctx, shape, dtype);
    tensors.push(t);
    uploadTo(ctx, t, a);
    return t;
  };
  const down = <T extends ArrayBufferView>(out: T, src: Tensor): T => downloadFrom(ctx, src, out);
  const freeAll = (): void => {
    ctx.synchronize();
    tensors.forEach((t) => t.dispose());
    tensors = [];
  };
  // rows are written into sequence 1 of arrays of two; sequence 0 and the other rows hold guard bytes
  const B = 2;
  const seq = 1;

  beforeAll(() => {
    cuda = CudaBackend.create(0);
    ctx = cuda.ctx;
  });
  afterAll(() => cuda?.dispose());

  CASES.forEach((cfg, caseIndex) => {
    const { headDim: D, residuals: R, groups: G, tokens: n, rowStart, codeBits: Nc } = cfg;
    const P = D / 2;
    const F = G * D;
    const name = `D_h ${D}, R ${R}, G ${G}, n ${n}, rowStart ${rowStart}, N_c ${Nc}, ${cfg.keyDType} keys`;

    it(`${name}: keys encode, pack and dequantize as the CPU cache does`, () => {
      const rng = new Rng(SEED + 7919 * caseIndex);
      const before = cuda.memory().bytesInUse;
      const cb = new LayerKeyCodebook({ residuals: R, groups: G, halfSize: 64, pairs: P }, Float32Array.from({ length: R * G * 128 * P }, () => 0.05 * rng.normal()));
      const raw = Float32Array.from({ length: n * F }, () => rng.normal() * (1 + 0.5 * rng.uniform()));
      const rows = cfg.keyDType === 'bf16' ? raw.map((x) => bf16ToF32(f32ToBf16(x))) : raw;
      const capacity = rowStart + n + 3;
      const rowBytes = packedCodeBytes(R * G);
      const row0 = seq * capacity + rowStart; // the first row written, counted over both sequences
      try {
        const theta = up(cb.theta, [cb.theta.length], 'f32');
        const kPre = up(cfg.keyDType === 'bf16' ? Uint16Array.from(rows, f32ToBf16) : rows, [n, F], cfg.keyDType);
        const enc = encodeKeysOnDevice(ctx, { theta, residuals: R, groups: G, headDim: D }, kPre);
        const codes = down(new Int32Array(R * G * n), enc.codes);
        const n2 = down(new Float32Array(n), enc.n2);

        // codes and norms against encodeKeys
        const cpu = encodeKeys(cb, rows);
        ok(compareCodes(cb, rows, cpu.codes, codes, n).msg);
        ok(checkClose('√n2', n2.map(Math.sqrt), cpu.norms, (t) => 1e-6 * cpu.norms[t]!));

        // pack into rows rowStart.. of arrays holding guard bytes
        const guardCodes = Uint8Array.from({ length: B * capacity * rowBytes }, () => rng.int(256));
        const guardNorms = Uint16Array.from({ length: B * capacity }, () => rng.int(65536));
        const keyCodes = up(guardCodes, [B, capacity, rowBytes], 'u8');
        const keyNorms = up(guardNorms, [B, capacity], 'bf16');
        launchPackKeys(ctx, { codes: enc.codes, n2: enc.n2, keyCodes, keyNorms }, { residuals: R, groups: G, sequence: seq, rowStart, tokens: n });
        enc.dispose();
        const gotCodes = down(new Uint8Array(B * capacity * rowBytes), keyCodes);
        const gotNorms = down(new Uint16Array(B * capacity), keyNorms);
        const wantCodes = guardCodes.slice();
        const wantNorms = guardNorms.slice();
        const perToken = new Uint16Array(R * G);
        for (let t = 0; t < n; t++) {
          for (let i = 0; i < R * G; i++) perToken[i] = codes[i * n + t]!;
          packCodes12(perToken, wantCodes, (row0 + t) * rowBytes);
          wantNorms[row0 + t] = f32ToBf16(Math.fround(Math.sqrt(n2[t]!)));
        }
        ok(checkClose('packed key codes (bytes)', gotCodes, wantCodes, () => 0));
        ok(checkClose('key norms (bf16 bits of √n2)', gotNorms, wantNorms, () => 0));
        const cpuNormBits = Uint16Array.from(cpu.norms, f32ToBf16);
        ok(checkClose('key norms vs CPU (bf16 steps)', gotNorms.subarray(row0, row0 + n), cpuNormBits, () => 1));

        // dequantize the stored rows: k̂ [n, G·D_h] bf16, HF, pre-RoPE, into the front of a buffer whose tail must stay NaN
        const outAll = up(new Uint16Array(n * F + 8).fill(0x7fc0), [n * F + 8], 'bf16');
        launchDequantKeys(ctx, { keyCodes, keyNorms, theta, out: outAll.view(0, [n, F]) }, { residuals: R, groups: G, headDim: D, sequence: seq, rowStart, tokens: n });
        const got = Float32Array.from(down(new Uint16Array(n * F + 8), outAll), bf16ToF32);
        expect(nonFinite(got.subarray(0, n * F)), `non-finite k̂ (seed ${SEED})`).toEqual([]);
        expect(Array.from(got.subarray(n * F)).every(Number.isNaN), `k̂ written past row n (seed ${SEED})`).toBe(true);
        const norms = Float32Array.from(gotNorms.subarray(row0, row0 + n), bf16ToF32);
        const want = decodeKeys(cb, { tokens: n, codes: Uint16Array.from(codes), norms });
        const mag = new Float64Array(n * F);
        for (let t = 0; t < n; t++) {
          for (let g = 0; g < G; g++) {
            for (let r = 0; r < R; r++) {
              const c = codes[(r * G + g) * n + t]!;
              const th = cb.stage(r, g);
              for (let j = 0; j < P; j++) {
                const [A, B] = [c >> 6, c & 63];
                mag[t * F + g * D + j] += norms[t]! * (Math.abs(th[2 * A * P + j]!) + Math.abs(th[(2 * B + 1) * P + j]!));
                mag[t * F + g * D + P + j] += norms[t]! * (Math.abs(th[(2 * A + 1) * P + j]!) + Math.abs(th[2 * B * P + j]!));
              }
            }
          }
        }
        ok(checkClose('k̂', got.subarray(0, n * F), want, (i) => BF16_EPS * Math.abs(want[i]!) + 4e-6 * mag[i]!));
      } finally {
        freeAll();
      }
      expect(cuda.memory().bytesInUse, 'device memory leaked').toBe(before);
    });

    it(`${name}: values pack (bits, ρ′) and dequantize as the CPU formula on bf16 E`, () => {
      const rng = new Rng(SEED + 7919 * caseIndex + 1);
      const before = cuda.memory().bytesInUse;
      const E = Float32Array.from({ length: Nc * F }, () => bf16ToF32(f32ToBf16(0.05 * rng.normal())));
      const ls = Float32Array.from({ length: F }, () => 0.5 + rng.uniform());
      const bits = Float32Array.from({ length: n * Nc }, (_, i) => (i < Nc ? 0 : rng.uniform() < 0.5 ? 1 : 0)); // token 0: no bit set
      const rho = Float32Array.from({ length: n }, () => 0.5 + rng.uniform());
      const capacity = rowStart + n + 3;
      const rowBytes = Nc / 8;
      const row0 = seq * capacity + rowStart; // the first row written, counted over both sequences
      try {
        const guardBits = Uint8Array.from({ length: B * capacity * rowBytes }, () => rng.int(256));
        const guardRho = Uint16Array.from({ length: B * capacity }, () => rng.int(65536));
        const valueBits = up(guardBits, [B, capacity, rowBytes], 'u8');
        const valueRho = up(guardRho, [B, capacity], 'bf16');
        const codebook = up(Uint16Array.from(E, f32ToBf16), [Nc, F], 'bf16');
        launchPackValues(ctx, { bits: up(bits, [n, Nc], 'f32'), rho: up(rho, [n], 'f32'), codebook, valueBits, valueRho }, { sequence: seq, rowStart, tokens: n });
        const gotBits = down(new Uint8Array(B * capacity * rowBytes), valueBits);
        const gotRho = down(new Uint16Array(B * capacity), valueRho);
        const wantBits = guardBits.slice();
        for (let t = 0; t < n; t++) packBits(bits.subarray(t * Nc, (t + 1) * Nc), wantBits, (row0 + t) * rowBytes);
        ok(checkClose('packed value bits (bytes)', gotBits, wantBits, () => 0));
        ok(checkClose('rows outside the call (ρ′ guard)', [...gotRho.subarray(0, row0), ...gotRho.subarray(row0 + n)], [...guardRho.subarray(0, row0), ...guardRho.subarray(row0 + n)], () => 0));
        // ρ′ reference and b·E in f64 from the bf16 E
        const W = new Float64Array(n * F);
        const absW = new Float64Array(n * F);
        for (let t = 0; t < n; t++) {
          for (let i = 0; i < Nc; i++) {
            if (!bits[t * Nc + i]) continue;
            for (let c = 0; c < F; c++) {
              W[t * F + c] += E[i * F + c]!;
              absW[t * F + c] += Math.abs(E[i * F + c]!);
            }
          }
        }
        const rhoRef = Float64Array.from({ length: n }, (_, t) => {
          let ss = 0;
          for (let c = 0; c < F; c++) ss += W[t * F + c]! ** 2;
          return (rho[t]! + 1e-6) / (Math.sqrt(ss) + 1e-6);
        });
        const rhoGot = Float32Array.from(gotRho.subarray(row0, row0 + n), bf16ToF32);
        ok(checkClose('ρ′', rhoGot, rhoRef, (t) => (BF16_EPS + 1e-5) * rhoRef[t]!));

        const outAll = up(new Uint16Array(n * F + 8).fill(0x7fc0), [n * F + 8], 'bf16');
        const scale = up(ls, [F], 'f32');
        launchDequantValues(ctx, { valueBits, valueRho, codebook, scale, out: outAll.view(0, [n, F]) }, { sequence: seq, rowStart, tokens: n });
        const got = Float32Array.from(down(new Uint16Array(n * F + 8), outAll), bf16ToF32);
        expect(nonFinite(got.subarray(0, n * F)), `non-finite v̂ (seed ${SEED})`).toEqual([]);
        expect(Array.from(got.subarray(n * F)).every(Number.isNaN), `v̂ written past row n (seed ${SEED})`).toBe(true);
        const want = new Float64Array(n * F);
        const mag = new Float64Array(n * F);
        for (let t = 0; t < n; t++) {
          for (let c = 0; c < F; c++) {
            const s = rhoGot[t]! * (ls[c]! + 1e-6);
            want[t * F + c] = W[t * F + c]! * s;
            mag[t * F + c] = absW[t * F + c]! * s;
          }
        }
        ok(checkClose('v̂', got.subarray(0, n * F), want, (i) => BF16_EPS * Math.abs(want[i]!) + 1e-5 * mag[i]!));
      } finally {
        freeAll();
      }
      expect(cuda.memory().bytesInUse, 'device memory leaked').toBe(before);
    });
  });

  it('encodes in chunks as it does in one piece, with given outputs and prebuilt tables (D_h 128, G 8, R 11)', () => {
    const rng = new Rng(SEED + 31);
    const before = cuda.memory().bytesInUse;
    const [R, G, D] = [11, 8, 128];
    const chunk = encodeChunkTokens(1 << 20, G, D);
    const n = chunk + 300; // two chunks: the second one 300 tokens
    try {
      const theta = up(Float32Array.from({ length: R * G * 128 * (D / 2) }, () => 0.05 * rng.normal()), [R, G, 128 * (D / 2)], 'f32');
      const rows = up(Uint16Array.from({ length: n * G * D }, () => f32ToBf16(rng.normal())), [n, G * D], 'bf16');
      const tables = DeviceKeyTables.build(ctx, { theta, residuals: R, groups: G, headDim: D });
      const layer = { theta, residuals: R, groups: G, headDim: D, tables };
      const codes = emptyTensor(ctx, [R, G, n], 'i32');
      const n2 = emptyTensor(ctx, [n], 'f32');
      tensors.push(codes, n2);
      encodeKeysOnDevice(ctx, layer, rows, { out: { codes, n2 } }).dispose(); // frees nothing of ours
      const whole = down(new Int32Array(R * G * n), codes);
      const wholeN2 = down(new Float32Array(n), n2);
      for (const first of [0, chunk]) {
        const part = encodeKeysOnDevice(ctx, layer, rows.rows(first, 300));
        const c = down(new Int32Array(R * G * 300), part.codes);
        const p2 = down(new Float32Array(300), part.n2);
        part.dispose();
        const sliced = new Int32Array(R * G * 300);
        for (let i = 0; i < R * G; i++) sliced.set(whole.subarray(i * n + first, i * n + first + 300), i * 300);
        ok(checkClose(`codes of tokens ${first}.. (chunked vs alone)`, sliced, c, () => 0));
        ok(checkClose(`n2 of tokens ${first}.. (chunked vs alone)`, wholeN2.subarray(first, first + 300), p2, () => 0));
      }
      tables.dispose();
    } finally {
      freeAll();
    }
    expect(cuda.memory().bytesInUse, 'device memory leaked').toBe(before);
  });

  it('runs a 128K-token layer fast: dequant values (N_c 1024, D 1024), pack values, key encoding (R 11, G 8)', () => {
    const rng = new Rng(SEED + 37);
    const before = cuda.memory().bytesInUse;
    const [n, Nc, F] = [131072, 1024, 1024];
    const timer = new CudaTimer(ctx);
    const time = (fn: () => void, reps: number): number => {
      fn(); // warm-up: module load, allocator
      timer.start();
      for (let i = 0; i < reps; i++) fn();
      return timer.stop() / reps;
    };
    try {
      const bitsHost = Uint8Array.from({ length: (n * Nc) / 8 }, () => rng.int(256));
      const rhoHost = Uint16Array.from({ length: n }, () => f32ToBf16(0.5 + rng.uniform()));
      const E = Float32Array.from({ length: Nc * F }, () => bf16ToF32(f32ToBf16(0.05 * rng.normal())));
      const ls = Float32Array.from({ length: F }, () => 0.5 + rng.uniform());
      const valueBits = up(bitsHost, [1, n, Nc / 8], 'u8');
      const valueRho = up(rhoHost, [1, n], 'bf16');
      const codebook = up(Uint16Array.from(E, f32ToBf16), [Nc, F], 'bf16');
      const scale = up(ls, [F], 'f32');
      const out = emptyTensor(ctx, [n, F], 'bf16');
      tensors.push(out);
      const rows = { sequence: 0, rowStart: 0, tokens: n };
      const dequantMs = time(() => launchDequantValues(ctx, { valueBits, valueRho, codebook, scale, out }, rows), 5);
      // spot-check rows across the range against the formula (f64)
      const rowsOut = new Uint16Array(n * F);
      down(rowsOut, out);
      for (const t of [0, 4097, 65535, n - 1]) {
        const want = new Float64Array(F);
        const mag = new Float64Array(F);
        for (let i = 0; i < Nc; i++) {
          if (!((bitsHost[t * (Nc / 8) + (i >> 3)]! >> (i & 7)) & 1)) continue;
          for (let c = 0; c < F; c++) {
            want[c] += E[i * F + c]!;
            mag[c] += Math.abs(E[i * F + c]!);
          }
        }
        const s = (c: number) => bf16ToF32(rhoHost[t]!) * (ls[c]! + 1e-6);
        for (let c = 0; c < F; c++) [want[c], mag[c]] = [want[c]! * s(c), mag[c]! * s(c)];
        const got = Float32Array.from(rowsOut.subarray(t * F, (t + 1) * F), bf16ToF32);
        ok(checkClose(`v̂ row ${t} of 131072`, got, want, (c) => BF16_EPS * Math.abs(want[c]!) + 1e-5 * mag[c]!));
      }
      const bitsF32 = emptyTensor(ctx, [n, Nc], 'f32'); // 512 MiB of 0/1 floats, as encodeValues hands them over
      const rhoF32 = up(new Float32Array(n).fill(1), [n], 'f32');
      const ws = emptyTensor(ctx, [packValuesWorkspaceFloats({ tokens: n, featDim: F })], 'f32');
      tensors.push(bitsF32, ws);
      zeroFill(ctx, bitsF32);
      const packMs = time(() => launchPackValues(ctx, { bits: bitsF32, rho: rhoF32, codebook, valueBits, valueRho, workspace: ws }, rows), 3);
      const [R, G, D] = [11, 8, 128];
      const theta = up(Float32Array.from({ length: R * G * 128 * (D / 2) }, () => 0.05 * rng.normal()), [R * G * 128 * (D / 2)], 'f32');
      const layer = { theta, residuals: R, groups: G, headDim: D };
      const kPre = out; // any [n, 1024] bf16 rows will do for timing
      const encodeMs = time(() => encodeKeysOnDevice(ctx, layer, kPre).dispose(), 1);
      const encode128Ms = time(() => encodeKeysOnDevice(ctx, layer, kPre.rows(0, 128)).dispose(), 10);
      console.log(`[commvq cache kernels, ${ctx.info.name}] n = 131072, N_c 1024, D 1024: dequant values ${dequantMs.toFixed(2)} ms, `
        + `pack values ${packMs.toFixed(2)} ms; key encoding (R 11, G 8, D_h 128): ${encodeMs.toFixed(1)} ms for 131072 tokens, ${encode128Ms.toFixed(2)} ms for 128`);
      expect(dequantMs, 'dequant values at 128K tokens').toBeLessThan(250);
    } finally {
      timer.dispose();
      freeAll();
    }
    expect(cuda.memory().bytesInUse, 'device memory leaked').toBe(before);
  });
});

describe('CommVQ cache kernels: argument checks and launch plans (no GPU needed)', () => {
  const info: DeviceInfo = { ordinal: 0, name: 'test device', computeCapability: [9, 0], smCount: 132, maxSharedPerBlockOptin: 232448, totalMemory: 80e9 };

  /** A context that records launches and allocations instead of running them. */
  function fakeContext() {
    const launches: { name: string; grid: readonly number[]; block: readonly number[]; shared: number; args: readonly KernelArg[] }[] = [];
    const live = new Set<bigint>();
    let next = 1n << 20n;
    const ctx: CudaContextLike = {
      info, stream: 0n,
      kernel: (module, name): CudaKernel => ({ module, name, handle: 1n }),
      launch: (k, grid, block, shared, args) => void launches.push({ name: k.name, grid, block, shared, args }),
      alloc: (bytes) => {
        const p = next;
        next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
        live.add(p);
        return { ptr: p, bytes, free: () => live.delete(p) };
      },
      copy: () => undefined,
      memset: () => undefined,
      upload: () => undefined,
      download: () => undefined,
    };
    return { ctx, launches, live };
  }
  const P = 1n << 12n;
  const argOf = (a: KernelArg): bigint | number => a.value;
  // tensors at P (never read: the context runs nothing), shaped as each launcher checks them; R 11, G 8
  const codesOf = (m: number, n2 = P) => ({ codes: fakeTensor(P, [11, 8, m], 'i32'), n2: fakeTensor(n2, [m], 'f32') });
  const keysIn = (capacity: number, B = 1) => ({ keyCodes: fakeTensor(P, [B, capacity, packedCodeBytes(88)], 'u8'), keyNorms: fakeTensor(P, [B, capacity], 'bf16') });
  const valuesIn = (capacity: number, Nc = 1024) => ({ valueBits: fakeTensor(P, [1, capacity, Nc / 8], 'u8'), valueRho: fakeTensor(P, [1, capacity], 'bf16') });
  const codebookOf = (Nc: number, D: number, at = P) => fakeTensor(at, [Nc, D], 'bf16');
  const thetaOf = (R: number, D = 128) => fakeTensor(P, [R * 8 * 128 * (D / 2)], 'f32');
  const keys = { residuals: 11, groups: 8 };

  it.each([
    ['rows past the capacity', () => launchPackKeys(fakeContext().ctx, { ...codesOf(128), ...keysIn(4096) }, { ...keys, sequence: 0, rowStart: 4000, tokens: 128 }), /exceed the capacity/],
    ['a negative rowStart', () => launchPackKeys(fakeContext().ctx, { ...codesOf(1), ...keysIn(4096) }, { ...keys, sequence: 0, rowStart: -1, tokens: 1 }), /rowStart/],
    ['a sequence past the arrays', () => launchPackKeys(fakeContext().ctx, { ...codesOf(1), ...keysIn(64) }, { ...keys, sequence: 1, rowStart: 0, tokens: 1 }), /sequence 1 of a cache of 1/],
    ['codes of another layer shape', () => launchPackKeys(fakeContext().ctx, { ...codesOf(1), codes: fakeTensor(P, [11, 4, 1], 'i32'), ...keysIn(64) }, { ...keys, sequence: 0, rowStart: 0, tokens: 1 }), /codes has shape/],
    ['a null pointer', () => launchPackKeys(fakeContext().ctx, { ...codesOf(1, 0n), ...keysIn(64) }, { ...keys, sequence: 0, rowStart: 0, tokens: 1 }), /n2 is a null pointer/],
    ['N_c not a multiple of 64', () => launchPackValues(fakeContext().ctx, { bits: fakeTensor(P, [1, 96], 'f32'), rho: fakeTensor(P, [1], 'f32'), codebook: codebookOf(96, 1024), ...valuesIn(64, 96) }, { sequence: 0, rowStart: 0, tokens: 1 }), /N_c = 96/],
    ['D not a multiple of 64', () => launchDequantValues(fakeContext().ctx, { ...valuesIn(64), codebook: codebookOf(1024, 96), scale: fakeTensor(P, [96], 'f32'), out: fakeTensor(P, [1, 96], 'bf16') }, { sequence: 0, rowStart: 0, tokens: 1 }), /D = 96/],
    ['a misaligned codebook', () => launchDequantValues(fakeContext().ctx, { ...valuesIn(64), codebook: codebookOf(1024, 1024, P + 8n), scale: fakeTensor(P, [1024], 'f32'), out: fakeTensor(P, [1, 1024], 'bf16') }, { sequence: 0, rowStart: 0, tokens: 1 }), /codebook is not 16-byte aligned/],
    ['head_dim 96', () => launchDequantKeys(fakeContext().ctx, { ...keysIn(64), theta: thetaOf(11), out: fakeTensor(P, [1, 8 * 96], 'bf16') }, { ...keys, headDim: 96, sequence: 0, rowStart: 0, tokens: 1 }), /head_dim 96/],
    ['keys of dtype i32', () => encodeKeysOnDevice(fakeContext().ctx, { theta: thetaOf(11), ...keys, headDim: 128 }, fakeTensor(P, [128, 1024], 'i32')), /dtype i32/],
    ['an encoder head_dim 80', () => encodeKeysOnDevice(fakeContext().ctx, { theta: thetaOf(11), ...keys, headDim: 80 }, fakeTensor(P, [128, 640], 'f32')), /head_dim 80/],
    ['tables of another layer shape', () => {
      const { ctx } = fakeContext();
      const tables = DeviceKeyTables.build(ctx, { theta: thetaOf(11), ...keys, headDim: 128 });
      encodeKeysOnDevice(ctx, { theta: thetaOf(21), residuals: 21, groups: 8, headDim: 128, tables }, fakeTensor(P, [128, 1024], 'f32'));
    }, /do not fit the layer/],
  ] as [string, () => void, RegExp][])('refuses %s with a CommvqError', (_, call, message) => {
    expect(call).toThrow(CommvqError);
    expect(call).toThrow(message);
  });

  it('launches nothing for zero tokens, and offsets every row pointer by sequence, rowStart and the first code', () => {
    const { ctx, launches } = fakeContext();
    launchPackKeys(ctx, { ...codesOf(0), ...keysIn(64) }, { ...keys, sequence: 0, rowStart: 5, tokens: 0 });
    expect(launches).toEqual([]);
    launchPackKeys(ctx, { ...codesOf(300), ...keysIn(320) }, { ...keys, sequence: 0, rowStart: 5, tokens: 300 });
    launchDequantValues(ctx, { ...valuesIn(320), codebook: codebookOf(1024, 1024), scale: fakeTensor(P, [1024], 'f32'), out: fakeTensor(P, [300, 1024], 'bf16') }, { sequence: 0, rowStart: 5, tokens: 300 });
    const [pack, dq] = launches;
    expect(pack!.args.map(argOf)).toEqual([P, P, P + 5n * 132n, P + 10n, 300, 88, 132, 300]); // the codes' stride: their tokens
    expect(pack!.grid).toEqual([2, 1, 1]);
    // one sequence's tokens within codes encoded for several: from the 200th on, stride 300; sequence 1 of two
    launchPackKeys(ctx, { ...codesOf(300), ...keysIn(320, 2) }, { ...keys, sequence: 1, rowStart: 5, tokens: 100, from: 200 });
    expect(launches[2]!.args.map(argOf)).toEqual([P + 800n, P + 800n, P + 325n * 132n, P + 650n, 100, 88, 132, 300]);
    expect(() => launchPackKeys(ctx, { ...codesOf(300), ...keysIn(320) }, { ...keys, sequence: 0, rowStart: 0, tokens: 101, from: 200 })).toThrow(/tokens 200 \+ 101 of codes encoded for 300/);
    expect(dq!.args.map(argOf).slice(0, 2)).toEqual([P + 5n * 128n, P + 10n]);
    expect(dq!.grid).toEqual([5, 8, 1]);
  });

  it('packs values in three launches and frees its own workspace', () => {
    const { ctx, launches, live } = fakeContext();
    launchPackValues(ctx, { bits: fakeTensor(P, [128, 1024], 'f32'), rho: fakeTensor(P, [128], 'f32'), codebook: codebookOf(1024, 1024), ...valuesIn(128) }, { sequence: 0, rowStart: 0, tokens: 128 });
    expect(launches.map((l) => l.name)).toEqual(['commvq_pack_value_bits', 'commvq_value_sumsq', 'commvq_value_rho']);
    expect(launches[1]!.grid).toEqual([2, 8, 1]);
    expect(live.size).toBe(0);
  });

  it('encodes 100K tokens in chunks: the tables in one launch, then one key_prepare and one key_encode per chunk', () => {
    const { ctx, launches, live } = fakeContext();
    const [R, G, D, n] = [11, 8, 128, 100_000];
    const chunk = encodeChunkTokens(n, G, D);
    expect(chunk % 64).toBe(0);
    expect(G * chunk * D * 4).toBeLessThanOrEqual(64 << 20);
    const enc = encodeKeysOnDevice(ctx, { theta: thetaOf(R), residuals: R, groups: G, headDim: D }, fakeTensor(P, [n, G * D], 'bf16'));
    const chunks = Math.ceil(n / chunk);
    const names = launches.map((l) => l.name);
    expect(names.filter((x) => x === 'key_layer_tables').length).toBe(1);
    expect(launches.find((l) => l.name === 'key_layer_tables')!.grid).toEqual([16, R * G, 1]);
    expect(names.filter((x) => x === 'cast_bf16_to_f32').length).toBe(chunks);
    expect(names.filter((x) => x === 'key_prepare').length).toBe(chunks);
    const encodes = launches.filter((l) => l.name === 'key_encode_d128');
    expect(encodes.length).toBe(chunks);
    // long chunks: 8 warps × 16 tokens a block, one block row per group; a 128-token chunk takes 4 warps (below)
    expect(encodes[0]!.grid).toEqual([chunk / 128, G, 1]);
    expect(encodes[0]!.block).toEqual([256, 1, 1]);
    // the last chunk: its N, codes from column n0 of rows of n, no error sums
    const n0 = (chunks - 1) * chunk;
    const args = encodes[chunks - 1]!.args.map(argOf);
    expect(args[3]).toBe(n - n0);
    expect(args[4]).toBe(R);
    expect(args[5]).toBe(addressOf(enc.codes) + BigInt(n0 * 4));
    expect(args[6]).toBe(n);
    expect(args[7]).toBe(0n);
    expect(live.size).toBe(2); // the result's codes and n2
    enc.dispose();
    expect(live.size).toBe(0);
    // n = 128: one chunk, two blocks per group
    launches.length = 0;
    const out = { codes: fakeTensor(P, [R, G, 128], 'i32'), n2: fakeTensor(P, [128], 'f32') };
    encodeKeysOnDevice(ctx, { theta: thetaOf(R), residuals: R, groups: G, headDim: D }, fakeTensor(P, [128, G * D], 'f32'), { out }).dispose();
    expect(launches.filter((l) => l.name === 'key_encode_d128').map((l) => [l.grid, l.block])).toEqual([[[2, G, 1], [128, 1, 1]]]);
    expect(live.size).toBe(0);
  });
});
