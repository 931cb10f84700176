import type { AttentionShape } from '../backend/backend.js';
import type { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { asCpu } from '../backend/cpu/cpu-tensor.js';
import { toFloat32Array } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { CATEGORY_BITS, gumbelNoise, type AdamWOptions, type GumbelNoise, type TrainOps } from './train-ops.js';

const EPS = 1e-6;

/** Plain-loop reference of TrainOps (f64 sums, f32 storage). */
export class CpuTrainOps implements TrainOps {
  constructor(readonly backend: CpuBackend) {}

  matmul(a: Tensor, b: Tensor, o: { transA?: boolean; transB?: boolean; accumulate?: Tensor } = {}): Tensor {
    const A = f32(a);
    const B = f32(b);
    const [ar, ac] = dims(a);
    const [br, bc] = dims(b);
    const [M, K] = o.transA ? [ac, ar] : [ar, ac];
    const [K2, N] = o.transB ? [bc, br] : [br, bc];
    if (K !== K2) throw new Error(`matmul: inner sizes ${K} and ${K2} differ`);
    const out = o.accumulate ? mutable(o.accumulate) : new Float32Array(M * N);
    const at = (i: number, k: number) => (o.transA ? A[k * ac + i]! : A[i * ac + k]!);
    const bt = (k: number, j: number) => (o.transB ? B[j * bc + k]! : B[k * bc + j]!);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += at(i, k) * bt(k, j);
        out[i * N + j] = (o.accumulate ? out[i * N + j]! : 0) + s;
      }
    }
    return o.accumulate ?? this.make([M, N], out);
  }

  addBias(x: Tensor, bias: Tensor): Tensor {
    const X = f32(x);
    const b = f32(bias);
    const C = b.length;
    return this.make(x.shape, X.map((v, i) => v + b[i % C]!));
  }

  sumRowsInto(x: Tensor, into: Tensor): void {
    const X = f32(x);
    const out = mutable(into);
    const C = out.length;
    const sums = new Float64Array(C);
    for (let i = 0; i < X.length; i++) sums[i % C] += X[i]!;
    for (let c = 0; c < C; c++) out[c] = out[c]! + sums[c]!;
  }

  prescale(v: Tensor, ls: Tensor): { uhat: Tensor; rho: Tensor } {
    const V = f32(v);
    const L = f32(ls);
    const D = L.length;
    const T = V.length / D;
    const uhat = new Float32Array(V.length);
    const rho = new Float32Array(T);
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let c = 0; c < D; c++) {
        const u = V[t * D + c]! / (L[c]! + EPS);
        uhat[t * D + c] = u;
        ss += u * u;
      }
      rho[t] = Math.sqrt(ss);
      for (let c = 0; c < D; c++) uhat[t * D + c] = uhat[t * D + c]! / (rho[t]! + EPS);
    }
    return { uhat: this.make([T, D], uhat), rho: this.make([T], rho) };
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): { y: Tensor; xhat: Tensor } {
    const X = f32(x);
    const g = f32(gamma);
    const b = f32(beta);
    const C = g.length;
    const y = new Float32Array(X.length);
    const xhat = new Float32Array(X.length);
    for (let r = 0; r < X.length / C; r++) {
      let mean = 0;
      for (let c = 0; c < C; c++) mean += X[r * C + c]!;
      mean /= C;
      let variance = 0;
      for (let c = 0; c < C; c++) variance += (X[r * C + c]! - mean) ** 2;
      const rstd = 1 / Math.sqrt(variance / C + eps);
      for (let c = 0; c < C; c++) {
        xhat[r * C + c] = (X[r * C + c]! - mean) * rstd;
        y[r * C + c] = g[c]! * xhat[r * C + c]! + b[c]!;
      }
    }
    return { y: this.make(x.shape, y), xhat: this.make(x.shape, xhat) };
  }

  layerNormParamGrad(dy: Tensor, xhat: Tensor, dGamma: Tensor, dBeta: Tensor): void {
    const DY = f32(dy);
    const XH = f32(xhat);
    const dg = mutable(dGamma);
    const db = mutable(dBeta);
    const C = dg.length;
    const sg = new Float64Array(C);
    const sb = new Float64Array(C);
    for (let i = 0; i < DY.length; i++) {
      sg[i % C] += DY[i]! * XH[i]!;
      sb[i % C] += DY[i]!;
    }
    for (let c = 0; c < C; c++) {
      dg[c] = dg[c]! + sg[c]!;
      db[c] = db[c]! + sb[c]!;
    }
  }

  gelu(x: Tensor): Tensor {
    return this.make(x.shape, f32(x).map((v) => v * normalCdf(v)));
  }

  geluBackward(dy: Tensor, x: Tensor): Tensor {
    const X = f32(x);
    return this.make(x.shape, f32(dy).map((d, i) => d * (normalCdf(X[i]!) + X[i]! * normalPdf(X[i]!))));
  }

  gumbelBits(logits: Tensor, tau: number, noise: GumbelNoise): { bits: Tensor; soft: Tensor } {
    const Lg = f32(logits);
    const [T, W] = dims(logits);
    const groups = W / 4;
    const bits = new Float32Array(T * groups * 2);
    const soft = new Float32Array(Lg.length);
    for (let t = 0; t < T; t++) {
      for (let k = 0; k < groups; k++) {
        const base = t * W + 4 * k;
        const z = [0, 1, 2, 3].map((c) => (Lg[base + c]! + (noise === 'argmax' ? 0 : gumbelNoise(noise.seed, noise.stream, base + c))) / tau);
        const max = Math.max(...z);
        const e = z.map((v) => Math.exp(v - max));
        const sum = e[0]! + e[1]! + e[2]! + e[3]!;
        e.forEach((v, c) => (soft[base + c] = v / sum));
        const best = z.indexOf(max); // first on ties
        bits[(t * groups + k) * 2] = CATEGORY_BITS[best]![0];
        bits[(t * groups + k) * 2 + 1] = CATEGORY_BITS[best]![1];
      }
    }
    return { bits: this.make([T, groups * 2], bits), soft: this.make([T, W], soft) };
  }

  gumbelBitsBackward(dBits: Tensor, soft: Tensor, tau: number, dLogits: Tensor): void {
    const DB = f32(dBits);
    const S = f32(soft);
    const out = mutable(dLogits);
    for (let g = 0; g < DB.length / 2; g++) {
      const d0 = DB[2 * g]!;
      const d1 = DB[2 * g + 1]!;
      const dy = [d0, d1, d0 + d1, 0];
      const s = [0, 1, 2, 3].map((c) => S[4 * g + c]!);
      const dot = s[0]! * dy[0]! + s[1]! * dy[1]! + s[2]! * dy[2]! + s[3]! * dy[3]!;
      for (let c = 0; c < 4; c++) out[4 * g + c] = out[4 * g + c]! + (s[c]! * (dy[c]! - dot)) / tau;
    }
  }

  decode(w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    const Wt = f32(w);
    const R = f32(rho);
    const L = f32(ls);
    const D = L.length;
    const out = new Float32Array(Wt.length);
    for (let t = 0; t < R.length; t++) {
      let ss = 0;
      for (let c = 0; c < D; c++) ss += Wt[t * D + c]! ** 2;
      const alpha = (R[t]! + EPS) / (Math.sqrt(ss) + EPS);
      for (let c = 0; c < D; c++) out[t * D + c] = Wt[t * D + c]! * alpha * (L[c]! + EPS);
    }
    return this.make(w.shape, out);
  }

  decodeBackward(dvhat: Tensor, w: Tensor, rho: Tensor, ls: Tensor): Tensor {
    const DV = f32(dvhat);
    const Wt = f32(w);
    const R = f32(rho);
    const L = f32(ls);
    const D = L.length;
    const out = new Float32Array(Wt.length);
    for (let t = 0; t < R.length; t++) {
      let ss = 0;
      let dot = 0;
      for (let c = 0; c < D; c++) {
        ss += Wt[t * D + c]! ** 2;
        dot += DV[t * D + c]! * (L[c]! + EPS) * Wt[t * D + c]!;
      }
      const norm = Math.sqrt(ss);
      const alpha = (R[t]! + EPS) / (norm + EPS);
      const radial = norm > 0 ? (alpha / (norm + EPS)) * (dot / norm) : 0;
      for (let c = 0; c < D; c++) out[t * D + c] = alpha * DV[t * D + c]! * (L[c]! + EPS) - radial * Wt[t * D + c]!;
    }
    return this.make(w.shape, out);
  }

  squaredError(a: Tensor, b: Tensor, gradScale?: number): { sum: number; grad?: Tensor } {
    const A = f32(a);
    const B = f32(b);
    let sum = 0;
    const grad = gradScale === undefined ? undefined : new Float32Array(A.length);
    for (let i = 0; i < A.length; i++) {
      const d = A[i]! - B[i]!;
      sum += d * d;
      if (grad) grad[i] = 2 * gradScale! * d;
    }
    return { sum, grad: grad && this.make(a.shape, grad) };
  }

  attentionValueGrad(q: Tensor, k: Tensor, dOut: Tensor, s: AttentionShape): Tensor {
    const Q = f32(q);
    const K = f32(k);
    const G = f32(dOut);
    const { queryHeads: Hq, kvHeads: Hkv, headDim: Dh, qStart, kvLength } = s;
    const Tq = Q.length / (Hq * Dh);
    const group = Hq / Hkv;
    const dV = new Float64Array(kvLength * Hkv * Dh);
    const p = new Float64Array(kvLength);
    for (let i = 0; i < Tq; i++) {
      const visible = Math.min(qStart + i + 1, kvLength);
      for (let h = 0; h < Hq; h++) {
        const kv = Math.floor(h / group);
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          let dot = 0;
          for (let c = 0; c < Dh; c++) dot += Q[(i * Hq + h) * Dh + c]! * K[(j * Hkv + kv) * Dh + c]!;
          p[j] = dot / Math.sqrt(Dh);
          max = Math.max(max, p[j]!);
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) sum += (p[j] = Math.exp(p[j]! - max));
        for (let j = 0; j < visible; j++) {
          const w = p[j]! / sum;
          for (let c = 0; c < Dh; c++) dV[(j * Hkv + kv) * Dh + c] += w * G[(i * Hq + h) * Dh + c]!;
        }
      }
    }
    return this.make([kvLength, Hkv * Dh], Float32Array.from(dV));
  }

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    const P = mutable(param);
    const Gr = f32(grad);
    const M = mutable(m);
    const V = mutable(v);
    const c1 = 1 - o.beta1 ** o.step;
    const c2 = 1 - o.beta2 ** o.step;
    for (let i = 0; i < P.length; i++) {
      M[i] = o.beta1 * M[i]! + (1 - o.beta1) * Gr[i]!;
      V[i] = o.beta2 * V[i]! + (1 - o.beta2) * Gr[i]! ** 2;
      P[i] = P[i]! - o.lr * (M[i]! / c1 / (Math.sqrt(V[i]! / c2) + o.eps) + o.weightDecay * P[i]!);
    }
  }

  sumSquares(x: Tensor): number {
    let s = 0;
    for (const v of f32(x)) s += v * v;
    return s;
  }

  scaleInPlace(x: Tensor, s: number): void {
    const X = mutable(x);
    for (let i = 0; i < X.length; i++) X[i] = X[i]! * s;
  }

  private make(shape: readonly number[], data: Float32Array): Tensor {
    return this.backend.fromArray(data, shape, 'f32');
  }
}

/** Φ(x) = (1 + erf(x/√2))/2. */
export function normalCdf(x: number): number {
  return 0.5 * (1 + erf(x / Math.SQRT2));
}

export function normalPdf(x: number): number {
  return Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
}

/** erf with |error| < 1.2e-7 everywhere (the Chebyshev fit of erfc in Numerical Recipes, §6.2): below f32 rounding. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

function dims(t: Tensor): [number, number] {
  const s = t.shape;
  return s.length === 1 ? [1, s[0]!] : [s.slice(0, -1).reduce((a, b) => a * b, 1), s[s.length - 1]!];
}

function f32(t: Tensor): Float32Array {
  const c = asCpu(t);
  return toFloat32Array(c.data, c.dtype);
}

/** The f32 storage of a tensor updated in place. */
function mutable(t: Tensor): Float32Array {
  const c = asCpu(t);
  if (c.dtype !== 'f32') throw new Error(`in-place update of a ${c.dtype} tensor: training state must be f32`);
  return c.data as Float32Array;
}
