/**
 * The device cache's argmax value encoder (backend/cuda/ops/value-encode.ts) against a plain-loop f64 twin of the
 * encoder (spec §5.3: prescale, LayerNorm, Linear, GELU, Linear, argmax per 4-way group) and of the pack (bits LSB-first,
 * ρ′ = (ρ + 1e-6)/(‖b·E‖ + 1e-6)).
 *
 * Tolerances, and why. The GPU rounds the LayerNorm output x and the GELU output a to bf16 before each GEMM (w1, w2 are
 * bf16 already, the sums are f32). For every logit the twin computes the bound those roundings allow,
 *   |Δℓ_c| ≤ 2^-8·Σ_k |w2_ck|·(|a_k| + 1.13·Σ_j |w1_kj x_j|) + f32 sums' noise
 * (a bf16 rounding moves a value by ≤ 2^-9 of it, GELU's slope is within [−0.13, 1.13], doubled for safety; plus
 * 1e-5 of Σ|terms| for f32 sums of ≤ 4096 products), so a
 * group may choose differently from the twin only where its two candidates' logits lie within their bounds: a
 * near-tie. Beyond that, what matters is the method: the values decoded from the GPU's codes must be as close to the
 * exact values as the twin's, within 1% of the quantization error itself (the error the format adds is ≤ 1% of the
 * error the method makes by design). ρ′ is one bf16 rounding of an f32 quotient: 2^-8 relative plus f32 noise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { downloadFrom } from '../../src/core/backend/cuda/ops/copies.js';
import { launchEncodeValuesArgmax } from '../../src/core/backend/cuda/ops/value-encode.js';
import { compressorShape, type ValueCompressorShape } from '../../src/core/values/value-compressor.js';
import type { Bits } from '../../src/core/commvq/geometry.js';
import { bf16ToF32, f32ToBf16 } from '../../src/core/tensor/dtype.js';
import { unpackBits } from '../../src/core/tensor/code-packing.js';
import { BF16_EPS, checkClose, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();
const bf16 = (x: number): number => bf16ToF32(f32ToBf16(x));
const CATEGORY_BITS = [[1, 0], [0, 1], [1, 1], [0, 0]] as const;

interface Encoder {
  s: ValueCompressorShape;
  ls: Float32Array; gamma: Float32Array; beta: Float32Array;
  w1: Float32Array; b1: Float32Array; w2: Float32Array; b2: Float32Array; // w1, w2 bf16 values
  E: Float32Array; // bf16 values [N_c, D]
}

/** A random encoder as PyTorch initialises one (§5.7), with γ, β, ls moved off their defaults. */
function randomEncoder(rng: Rng, bits: Bits, D: number): Encoder {
  const s = compressorShape(bits, D);
  const uniform = (n: number, fanIn: number, round: boolean) =>
    Float32Array.from({ length: n }, () => { const x = (2 * rng.uniform() - 1) / Math.sqrt(fanIn); return round ? bf16(x) : x; });
  return {
    s,
    ls: Float32Array.from({ length: D }, () => 0.2 + rng.uniform()),
    gamma: Float32Array.from({ length: D }, () => 0.8 + 0.4 * rng.uniform()),
    beta: Float32Array.from({ length: D }, () => 0.1 * rng.normal()),
    w1: uniform(s.inter * D, D, true), b1: uniform(s.inter, D, false),
    w2: uniform(s.embedDim * s.inter, s.inter, true), b2: uniform(s.embedDim, s.inter, false),
    E: Float32Array.from({ length: s.codeBits * D }, () => bf16(rng.normal())),
  };
}

/** The f64 twin for one token: logits and the bound on each logit's GPU error. */
function twinLogits(e: Encoder, v: Float32Array): { logits: Float64Array; bound: Float64Array; rho: number } {
  const { featDim: D, inter, embedDim } = e.s;
  const u = Array.from(v, (x, c) => x / (e.ls[c]! + 1e-6));
  const rho = Math.sqrt(u.reduce((a, x) => a + x * x, 0));
  const uh = u.map((x) => x / (rho + 1e-6));
  const mean = uh.reduce((a, x) => a + x, 0) / D;
  const rstd = 1 / Math.sqrt(uh.reduce((a, x) => a + (x - mean) ** 2, 0) / D + 1e-5);
  const x = uh.map((h, c) => e.gamma[c]! * (h - mean) * rstd + e.beta[c]!);
  const a = new Float64Array(inter);
  const da = new Float64Array(inter); // bound on |Δa_k|
  for (let k = 0; k < inter; k++) {
    let h = e.b1[k]!;
    let hAbs = 0;
    for (let j = 0; j < D; j++) {
      const p = e.w1[k * D + j]! * x[j]!;
      h += p;
      hAbs += Math.abs(p);
    }
    const phi = 0.5 * (1 + erf(h / Math.SQRT2));
    a[k] = h * phi;
    da[k] = BF16_EPS * (Math.abs(a[k]!) + 1.13 * hAbs) + 1e-6 * (hAbs + 1);
  }
  const logits = new Float64Array(embedDim);
  const bound = new Float64Array(embedDim);
  for (let c = 0; c < embedDim; c++) {
    let l = e.b2[c]!;
    let err = 0;
    for (let k = 0; k < inter; k++) {
      l += e.w2[c * inter + k]! * a[k]!;
      err += Math.abs(e.w2[c * inter + k]!) * da[k]!;
    }
    logits[c] = l;
    bound[c] = err + 1e-5 * lAbs(e, c, a) + 1e-6; // f32 sums of inter products: far below 1e-5 of Σ|terms|
  }
  return { logits, bound, rho };
}

function lAbs(e: Encoder, c: number, a: Float64Array): number {
  let s = Math.abs(e.b2[c]!);
  for (let k = 0; k < e.s.inter; k++) s += Math.abs(e.w2[c * e.s.inter + k]! * a[k]!);
  return s;
}

/** erf in f64 (Taylor series below 3, erfc's continued fraction above): ties need more than a 1e-7 approximation. */
function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 60; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for |x| ≥ 3
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
}

/** v̂ = (b·E)/(‖b·E‖ + 1e-6)·(ρ + 1e-6) ⊙ (ls + 1e-6) of one token's bits (§5.4), in f64; with ‖b·E‖. */
function decode(e: Encoder, bits: ArrayLike<number>, rho: number): { v: Float64Array; norm: number } {
  const D = e.s.featDim;
  const w = new Float64Array(D);
  for (let i = 0; i < e.s.codeBits; i++) if (bits[i]) for (let c = 0; c < D; c++) w[c] += e.E[i * D + c]!;
  const norm = Math.sqrt(w.reduce((a, x) => a + x * x, 0));
  return { v: w.map((x, c) => (x / (norm + 1e-6)) * (rho + 1e-6) * (e.ls[c]! + 1e-6)), norm };
}

describe.skipIf(!gpu)(`argmax value encoder, GPU (bf16 GEMMs) vs f64 twin (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let backend: CudaBackend;
  beforeAll(() => {
    backend = CudaBackend.create(0);
  });
  afterAll(() => backend?.dispose());

  const cases = [
    { name: 'tiny, 1 bit, D 128, 96 tokens at row 37 of sequence 1', bits: 1 as Bits, D: 128, tokens: 96, sequence: 1, rowStart: 37 },
    { name: 'tiny, 2 bits, D 128', bits: 2 as Bits, D: 128, tokens: 64, sequence: 0, rowStart: 0 },
    { name: 'Llama-3.1-8B widths, 1 bit, D 1024', bits: 1 as Bits, D: 1024, tokens: 40, sequence: 0, rowStart: 5 },
    { name: 'Llama-3.1-8B widths, 2 bits, D 1024', bits: 2 as Bits, D: 1024, tokens: 24, sequence: 1, rowStart: 0 },
  ];
  for (const c of cases) {
    it(`${c.name}: differing groups are near-ties, decoded error within 1% of the twin's, ρ′ one bf16 step`, () => {
      const rng = new Rng(SEED ^ (c.D * 31 + c.bits));
      const e = randomEncoder(rng, c.bits, c.D);
      const { featDim: D, codeBits: Nc, embedDim } = e.s;
      const n = c.tokens;
      // values with per-channel scales and a few outliers, as real values have
      const chan = Float32Array.from({ length: D }, () => Math.exp(rng.normal()));
      const v = Float32Array.from({ length: n * D }, (_, i) => bf16(chan[i % D]! * rng.normal() * (rng.uniform() < 0.01 ? 8 : 1)));
      const ctx = backend.ctx;
      const B = 2;
      const capacity = c.rowStart + n + 3;
      const up = (a: Float32Array, shape: number[], dtype: 'f32' | 'bf16') => backend.fromArray(a, shape, dtype);
      const valueBits = backend.zeros([B, capacity, Nc / 8], 'u8');
      const valueRho = backend.zeros([B, capacity], 'bf16');
      const tensors = {
        values: up(v, [n, D], 'bf16'), scale: up(e.ls, [D], 'f32'), codebook: up(e.E, [Nc, D], 'bf16'),
        encoder: {
          lnGamma: up(e.gamma, [D], 'f32'), lnBeta: up(e.beta, [D], 'f32'), w1: up(e.w1, [e.s.inter, D], 'bf16'),
          b1: up(e.b1, [e.s.inter], 'f32'), w2: up(e.w2, [embedDim, e.s.inter], 'bf16'), b2: up(e.b2, [embedDim], 'f32'),
        },
      };
      launchEncodeValuesArgmax(ctx, backend.blas(), { ...tensors, valueBits, valueRho }, { sequence: c.sequence, rowStart: c.rowStart, tokens: n });
      const packed = downloadFrom(ctx, valueBits, new Uint8Array(B * capacity * (Nc / 8)));
      const rhoBits = downloadFrom(ctx, valueRho, new Uint16Array(B * capacity));
      const rowOf = (t: number) => c.sequence * capacity + c.rowStart + t;
      // rows outside the call stay zero
      const touched = new Set(Array.from({ length: n }, (_, t) => rowOf(t)));
      for (let r = 0; r < B * capacity; r++) {
        if (touched.has(r)) continue;
        expect(packed.subarray(r * (Nc / 8), (r + 1) * (Nc / 8)).every((x) => x === 0), `row ${r} written`).toBe(true);
        expect(rhoBits[r], `ρ′ of row ${r} written`).toBe(0);
      }
      let differing = 0;
      const notTies: string[] = [];
      let errGpu = 0;
      let errTwin = 0;
      const rhoGot: number[] = [];
      const rhoWant: number[] = [];
      for (let t = 0; t < n; t++) {
        const tv = v.subarray(t * D, (t + 1) * D);
        const { logits, bound, rho } = twinLogits(e, tv);
        const got = unpackBits(packed, Nc, rowOf(t) * (Nc / 8));
        const want = new Float32Array(Nc);
        for (let g = 0; g < Nc / 2; g++) {
          let k = 0;
          for (let j = 1; j < 4; j++) if (logits[4 * g + j]! > logits[4 * g + k]!) k = j;
          [want[2 * g], want[2 * g + 1]] = CATEGORY_BITS[k]!;
          const kGot = CATEGORY_BITS.findIndex(([b0, b1]) => b0 === got[2 * g] && b1 === got[2 * g + 1]);
          if (kGot === k) continue;
          differing++;
          const margin = logits[4 * g + k]! - logits[4 * g + kGot]!;
          if (margin > bound[4 * g + k]! + bound[4 * g + kGot]! && notTies.length < 5) notTies.push(`token ${t} group ${g}: margin ${margin.toExponential(2)}`);
        }
        const dg = decode(e, got, rho);
        const dw = decode(e, want, rho);
        for (let j = 0; j < D; j++) {
          errGpu += (tv[j]! - dg.v[j]!) ** 2;
          errTwin += (tv[j]! - dw.v[j]!) ** 2;
        }
        rhoGot.push(bf16ToF32(rhoBits[rowOf(t)]!));
        rhoWant.push((rho + 1e-6) / (dg.norm + 1e-6));
      }
      expect(notTies, `groups chosen differently that are not near-ties (seed ${SEED})`).toEqual([]);
      expect(differing, `differing groups (seed ${SEED})`).toBeLessThanOrEqual(Math.ceil(0.01 * n * (Nc / 2)));
      expect(Math.abs(errGpu - errTwin), `decoded error ${errGpu} against the twin's ${errTwin} (seed ${SEED})`).toBeLessThanOrEqual(0.01 * errTwin);
      expect(checkClose('ρ′', rhoGot, rhoWant, (i) => BF16_EPS * Math.abs(rhoWant[i]!) + 1e-4 * Math.abs(rhoWant[i]!))).toBeNull();
      [valueBits, valueRho, tensors.values, tensors.scale, tensors.codebook, ...Object.values(tensors.encoder)].forEach((x) => x.dispose());
    }, 60_000);
  }
});
