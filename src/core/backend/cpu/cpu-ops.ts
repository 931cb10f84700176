/**
 * Plain-loop reference implementations of the forward-pass ops, on f32 arrays. Sums are accumulated in JavaScript
 * numbers (f64), results stored as f32: at least as exact as PyTorch's f32 CPU kernels, which makes these the
 * yardstick for every GPU kernel. Layouts are row-major; see `Backend` for each op's contract.
 */
import type { AttentionShape, RopeTable } from '../backend.js';

/** out[t, o] = Σ_i x[t, i]·w[o, i] + bias[o];  x [T, inF], w [outF, inF]. */
export function linearF32(x: Float32Array, w: Float32Array, bias: Float32Array | undefined, T: number, inF: number, outF: number): Float32Array {
  const out = new Float32Array(T * outF);
  for (let t = 0; t < T; t++) {
    const xo = t * inF;
    for (let o = 0; o < outF; o++) {
      const wo = o * inF;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let i = 0;
      for (; i + 3 < inF; i += 4) {
        s0 += x[xo + i]! * w[wo + i]!;
        s1 += x[xo + i + 1]! * w[wo + i + 1]!;
        s2 += x[xo + i + 2]! * w[wo + i + 2]!;
        s3 += x[xo + i + 3]! * w[wo + i + 3]!;
      }
      for (; i < inF; i++) s0 += x[xo + i]! * w[wo + i]!;
      out[t * outF + o] = s0 + s1 + s2 + s3 + (bias ? bias[o]! : 0);
    }
  }
  return out;
}

/** Hugging Face RMSNorm: y = f32(x·rsqrt(mean(x²) + eps))·weight, per row of width F. */
export function rmsNormF32(x: Float32Array, weight: Float32Array, eps: number, F: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / F; r++) {
    let ss = 0;
    for (let i = 0; i < F; i++) ss += x[r * F + i]! ** 2;
    const inv = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(ss / F) + eps)));
    for (let i = 0; i < F; i++) out[r * F + i] = Math.fround(x[r * F + i]! * inv) * weight[i]!;
  }
  return out;
}

/** silu(g)·u elementwise, silu(g) = g / (1 + e^-g). */
export function swigluF32(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    out[i] = Math.fround(g / (1 + Math.exp(-g))) * up[i]!;
  }
  return out;
}

/**
 * Rotate-half RoPE on x [T, heads·D_h]: for c < D_h/2, with φ = f32(p·invFreq[c]),
 *   x'[c] = x[c]·cos φ − x[c + D_h/2]·sin φ,   x'[c + D_h/2] = x[c + D_h/2]·cos φ + x[c]·sin φ.
 * cos and sin are rounded to f32 (and scaled by attentionScaling) as transformers does before using them.
 */
export function ropeF32(x: Float32Array, positions: Int32Array, rope: RopeTable): Float32Array {
  const D = rope.headDim;
  const half = D / 2;
  const width = x.length / positions.length;
  const out = new Float32Array(x.length);
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let t = 0; t < positions.length; t++) {
    for (let c = 0; c < half; c++) {
      const phi = Math.fround(positions[t]! * rope.invFreq[c]!);
      cos[c] = Math.fround(Math.cos(phi)) * rope.attentionScaling;
      sin[c] = Math.fround(Math.sin(phi)) * rope.attentionScaling;
    }
    for (let h = 0; h < width / D; h++) {
      const base = t * width + h * D;
      for (let c = 0; c < half; c++) {
        const a = x[base + c]!;
        const b = x[base + c + half]!;
        out[base + c] = Math.fround(a * cos[c]!) - Math.fround(b * sin[c]!);
        out[base + c + half] = Math.fround(b * cos[c]!) + Math.fround(a * sin[c]!);
      }
    }
  }
  return out;
}

/** Causal GQA attention (see Backend.attention): q [Tq, H_q·D_h], k/v [≥kvLength, H_kv·D_h] → [Tq, H_q·D_h]. */
export function attentionF32(q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionShape): Float32Array {
  const { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength } = s;
  const Tq = q.length / (Hq * D);
  const group = Hq / Hkv;
  const scale = 1 / Math.sqrt(D);
  const out = new Float32Array(q.length);
  const scores = new Float64Array(kvLength);
  for (let i = 0; i < Tq; i++) {
    const visible = Math.min(qStart + i + 1, kvLength);
    for (let h = 0; h < Hq; h++) {
      const qo = (i * Hq + h) * D;
      const kvo = Math.floor(h / group) * D;
      let max = -Infinity;
      for (let j = 0; j < visible; j++) {
        const ko = j * Hkv * D + kvo;
        let dot = 0;
        for (let c = 0; c < D; c++) dot += q[qo + c]! * k[ko + c]!;
        scores[j] = dot * scale;
        if (scores[j]! > max) max = scores[j]!;
      }
      let sum = 0;
      for (let j = 0; j < visible; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let c = 0; c < D; c++) {
        let acc = 0;
        for (let j = 0; j < visible; j++) acc += scores[j]! * v[j * Hkv * D + kvo + c]!;
        out[qo + c] = acc / sum;
      }
    }
  }
  return out;
}

/** Index of each row's maximum (first on ties) of x [R, F]. */
export function argmaxRowsF32(x: Float32Array, F: number): Int32Array {
  const R = x.length / F;
  const out = new Int32Array(R);
  for (let r = 0; r < R; r++) {
    let best = 0;
    for (let i = 1; i < F; i++) if (x[r * F + i]! > x[r * F + best]!) best = i;
    out[r] = best;
  }
  return out;
}
