/**
 * Every backward of the value-training primitives against central finite differences of a random linear
 * functional L(x) = Σ r ⊙ f(x), on the CPU reference (the GPU implementation is tested against this one).
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { CpuTrainOps } from '../../src/core/values/cpu-train-ops.js';
import { CATEGORY_BITS, gumbelNoise, uniformFromHash } from '../../src/core/values/train-ops.js';

const backend = new CpuBackend();
const ops = new CpuTrainOps(backend);
const rng = new SeededRandom(11);
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.normal());
const t = (values: Float32Array, shape: number[]) => backend.fromArray(values, shape, 'f32');
const val = (x: Tensor) => backend.toFloat32(x);
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

/** Checks grad (the backward's answer) against central differences of L at a few entries of x. */
function checkGradient(name: string, x: Float32Array, L: (x: Float32Array) => number, grad: Float32Array, h = 1e-2): void {
  const entries = Array.from({ length: Math.min(12, x.length) }, (_, i) => Math.floor((i * 7919) % x.length));
  for (const i of entries) {
    const plus = x.slice();
    const minus = x.slice();
    plus[i] = plus[i]! + h;
    minus[i] = minus[i]! - h;
    const fd = (L(plus) - L(minus)) / (2 * h);
    expect(Math.abs(fd - grad[i]!), `${name}[${i}]: finite difference ${fd}, backward ${grad[i]}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(fd));
  }
}

describe('TrainOps backward passes equal finite differences', () => {
  it('matmul (every transpose) and its accumulation', () => {
    const a = randn(3 * 4);
    const b = randn(4 * 5);
    const r = randn(3 * 5);
    const L = (av: Float32Array) => dot(r, val(ops.matmul(t(av, [3, 4]), t(b, [4, 5]))));
    // dL/da = r·bᵀ, computed as matmul(r, b, transB)
    checkGradient('matmul', a, L, val(ops.matmul(t(r, [3, 5]), t(b, [4, 5]), { transB: true })));
    const aT = val(ops.matmul(t(a, [3, 4]), t(b, [4, 5])));
    expect(Array.from(val(ops.matmul(t(a, [3, 4]), t(b, [4, 5]), { transA: false })))).toEqual(Array.from(aT));
    const acc = t(new Float32Array(15).fill(1), [3, 5]);
    ops.matmul(t(a, [3, 4]), t(b, [4, 5]), { accumulate: acc });
    expect(val(acc).every((v, i) => Math.abs(v - (aT[i]! + 1)) < 1e-5)).toBe(true);
  });

  it('LayerNorm parameter gradients', () => {
    const x = randn(5 * 8);
    const gamma = randn(8, 0.5).map((v) => v + 1);
    const beta = randn(8, 0.1);
    const r = randn(5 * 8);
    const { xhat } = ops.layerNorm(t(x, [5, 8]), t(gamma, [8]), t(beta, [8]), 1e-5);
    const dG = backend.zeros([8], 'f32');
    const dB = backend.zeros([8], 'f32');
    ops.layerNormParamGrad(t(r, [5, 8]), xhat, dG, dB);
    checkGradient('dγ', gamma, (g) => dot(r, val(ops.layerNorm(t(x, [5, 8]), t(g, [8]), t(beta, [8]), 1e-5).y)), val(dG));
    checkGradient('dβ', beta, (b) => dot(r, val(ops.layerNorm(t(x, [5, 8]), t(gamma, [8]), t(b, [8]), 1e-5).y)), val(dB));
  });

  it('GELU', () => {
    const x = randn(40, 2);
    const r = randn(40);
    checkGradient('gelu', x, (xv) => dot(r, val(ops.gelu(t(xv, [40])))), val(ops.geluBackward(t(r, [40]), t(x, [40]))), 1e-3);
  });

  it('straight-through Gumbel: the gradient of the soft relaxation the forward reports', () => {
    const T = 3;
    const groups = 4;
    const logits = randn(T * 4 * groups);
    const dBits = randn(T * 2 * groups);
    const noise = { seed: 7, stream: 3 };
    const tau = 0.7;
    // L(ℓ) = Σ_groups Σ_c soft_c(ℓ)·dy_c with dy from dBits through the category map
    const L = (lv: Float32Array) => {
      const soft = val(ops.gumbelBits(t(lv, [T, 4 * groups]), tau, noise).soft);
      let s = 0;
      for (let g = 0; g < T * groups; g++) {
        const dy = [dBits[2 * g]!, dBits[2 * g + 1]!, dBits[2 * g]! + dBits[2 * g + 1]!, 0];
        for (let c = 0; c < 4; c++) s += soft[4 * g + c]! * dy[c]!;
      }
      return s;
    };
    const { soft, bits } = ops.gumbelBits(t(logits, [T, 4 * groups]), tau, noise);
    const dLogits = backend.zeros([T, 4 * groups], 'f32');
    ops.gumbelBitsBackward(t(dBits, [T, 2 * groups]), soft, tau, dLogits);
    checkGradient('gumbel', logits, L, val(dLogits), 1e-3);
    // the forward bits are the category map of argmax(ℓ + g)
    const b = val(bits);
    for (let g = 0; g < T * groups; g++) {
      const z = [0, 1, 2, 3].map((c) => logits[4 * g + c]! + gumbelNoise(7, 3, 4 * g + c));
      const k = z.indexOf(Math.max(...z));
      expect([b[2 * g], b[2 * g + 1]]).toEqual([...CATEGORY_BITS[k]!]);
    }
  });

  it('decode: direction of w times the stored norm and scale', () => {
    const [T, D] = [3, 6];
    const w = randn(T * D);
    const rho = Float32Array.from(randn(T), (v) => Math.abs(v) + 0.5);
    const ls = Float32Array.from(randn(D), (v) => Math.abs(v) + 0.2);
    const r = randn(T * D);
    const L = (wv: Float32Array) => dot(r, val(ops.decode(t(wv, [T, D]), t(rho, [T]), t(ls, [D]))));
    checkGradient('decode', w, L, val(ops.decodeBackward(t(r, [T, D]), t(w, [T, D]), t(rho, [T]), t(ls, [D]))), 1e-3);
  });

  it('attention with respect to the values (GQA, causal, chunk at an offset)', () => {
    const shape = { queryHeads: 4, kvHeads: 2, headDim: 4, qStart: 2, kvLength: 5 };
    const q = randn(3 * 16);
    const k = randn(5 * 8);
    const v = randn(5 * 8);
    const r = randn(3 * 16);
    const L = (vv: Float32Array) => dot(r, val(backend.attention(t(q, [3, 16]), t(k, [5, 8]), t(vv, [5, 8]), shape)));
    checkGradient('attention dV', v, L, val(ops.attentionValueGrad(t(q, [3, 16]), t(k, [5, 8]), t(r, [3, 16]), shape)), 1e-3);
  });

  it('squared error and AdamW', () => {
    const a = randn(10);
    const b = randn(10);
    const { sum, grad } = ops.squaredError(t(a, [10]), t(b, [10]), 0.5);
    checkGradient('squared error', a, (av) => 0.5 * ops.squaredError(t(av, [10]), t(b, [10])).sum, val(grad!), 1e-3);
    expect(sum).toBeCloseTo(a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0), 4);
    // one AdamW step from zero moments moves each weight by lr·(sign(g) + wd·p) (bias-corrected m̂/√v̂ = sign g)
    const p = t(Float32Array.of(1, -2), [2]);
    const g = t(Float32Array.of(0.3, -4), [2]);
    ops.adamw(p, g, backend.zeros([2], 'f32'), backend.zeros([2], 'f32'), { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 });
    expect(Array.from(val(p)).map((x) => Number(x.toFixed(5)))).toEqual([1 - 0.1 * (1 + 0.1), -2 - 0.1 * (-1 - 0.2)].map((x) => Number(x.toFixed(5))));
  });
});

describe('Gumbel noise', () => {
  it('draws u strictly inside (0, 1) and exactly representable in f32, even at the extreme hashes', () => {
    for (const h of [0, 1, 511, 512, 0x7fffffff, 0xfffffe00, 0xffffffff]) {
      const u = uniformFromHash(h);
      expect(u).toBeGreaterThan(0);
      expect(u).toBeLessThan(1);
      expect(Math.fround(u)).toBe(u); // so the GPU's f32 u equals the CPU's
      expect(Math.fround(u)).toBeLessThan(1);
    }
    expect(Number.isFinite(-Math.log(-Math.log(uniformFromHash(0xffffffff))))).toBe(true);
    for (let i = 0; i < 100000; i++) expect(Number.isFinite(gumbelNoise(1, 2, i))).toBe(true);
  });
});
