import type { AttentionShape, Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * The primitives value-compressor training needs beyond inference, forward and backward, on one backend. All
 * tensors are f32 unless a comment says otherwise; shapes are row-major [rows, cols]. `CpuTrainOps` (plain loops) is
 * the reference; the CUDA implementation is tested against it. Every backward is checked by finite differences.
 *
 * Shape letters: T tokens, D = H_kv·D_h value width, n_e 4-way groups (N_c = 2·n_e bits per token).
 */
export interface TrainOps {
  readonly backend: Backend;
  /**
   * a·b with optional transposes: a [M, K] (transA: [K, M]), b [K, N] (transB: [N, K]) → [M, N] f32, or added into
   * `accumulate` ([M, N] f32, updated in place and returned) — gradients of weights accumulate this way.
   */
  matmul(a: Tensor, b: Tensor, options?: { transA?: boolean; transB?: boolean; accumulate?: Tensor }): Tensor;
  /** x [R, C] + bias [C] → new [R, C]. */
  addBias(x: Tensor, bias: Tensor): Tensor;
  /** into [C] += column sums of x [R, C] (bias gradients). */
  sumRowsInto(x: Tensor, into: Tensor): void;
  /** Value prescale (spec §5.3 steps 1–3): u = v / (ls + 1e-6), ρ = ‖u‖₂ per row, û = u / (ρ + 1e-6). v [T, D] any float dtype. */
  prescale(v: Tensor, ls: Tensor): { uhat: Tensor; rho: Tensor };
  /** LayerNorm over rows (biased variance, eps inside the root): y = γ ⊙ x̂ + β with x̂ = (x − μ)·rsqrt(var + eps). */
  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): { y: Tensor; xhat: Tensor };
  /** dGamma [C] += Σ_rows dy ⊙ x̂; dBeta [C] += Σ_rows dy (the input needs no gradient: it is data). */
  layerNormParamGrad(dy: Tensor, xhat: Tensor, dGamma: Tensor, dBeta: Tensor): void;
  /** GELU with the exact erf: x·Φ(x). */
  gelu(x: Tensor): Tensor;
  /** dx = dy ⊙ (Φ(x) + x·φ(x)). */
  geluBackward(dy: Tensor, x: Tensor): Tensor;
  /**
   * Hard Gumbel-softmax per 4-way group (spec §5.3 steps 5–6), logits [T, 4·n_e]: z = (ℓ + g)/τ with g from
   * `gumbelNoise(noise.seed, noise.stream, index)` (or g = 0 with `noise: 'argmax'`, the deterministic inference
   * encoder), soft = softmax(z) per group, k = argmax(z), bits [T, 2·n_e] ∈ {0, 1} from CATEGORY_BITS[k].
   * Returns soft [T, 4·n_e] for the straight-through backward.
   */
  gumbelBits(logits: Tensor, tau: number, noise: GumbelNoise): { bits: Tensor; soft: Tensor };
  /**
   * Straight-through backward: the forward value is the one-hot y, the gradient flows as if y = soft.
   * dy_c = dBits of the bits category c sets (dy0 = db₀, dy1 = db₁, dy2 = db₀ + db₁, dy3 = 0), then per group
   * dLogits += (1/τ)·soft ⊙ (dy − Σ_c soft_c·dy_c). dLogits [T, 4·n_e] is accumulated in place.
   */
  gumbelBitsBackward(dBits: Tensor, soft: Tensor, tau: number, dLogits: Tensor): void;
  /** Decode (spec §5.4) per row: v̂ = w/(‖w‖₂ + 1e-6)·(ρ + 1e-6)·(ls + 1e-6); w [T, D], ρ [T], ls [D]. */
  decode(w: Tensor, rho: Tensor, ls: Tensor): Tensor;
  /** dw = α·(dv̂ ⊙ s) − α/(‖w‖ + 1e-6)·(w/‖w‖)·Σ_j dv̂_j s_j w_j with α = (ρ + 1e-6)/(‖w‖ + 1e-6), s = ls + 1e-6. */
  decodeBackward(dvhat: Tensor, w: Tensor, rho: Tensor, ls: Tensor): Tensor;
  /** Σ (a − b)² over all elements (a, b any float dtype, same shape), and with `gradScale` the gradient gradScale·2(a − b) w.r.t. a. */
  squaredError(a: Tensor, b: Tensor, gradScale?: number): { sum: number; grad?: Tensor };
  /**
   * Gradient of causal GQA attention out = softmax(q kᵀ/√D_h)·v with respect to v, for q, k (post-RoPE, any float
   * dtype) fixed: dV [kvLength, H_kv·D_h] = Σ over the query heads h of each kv group of P_hᵀ·dOut_h, P recomputed.
   * dOut [Tq, H_q·D_h] f32.
   */
  attentionValueGrad(q: Tensor, k: Tensor, dOut: Tensor, shape: AttentionShape): Tensor;
  /** One AdamW step in place (decoupled weight decay: p ← p − lr·(m̂/(√v̂ + eps) + wd·p)); m, v f32 state; step ≥ 1. */
  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void;
  /** Σ x² (global gradient norms). */
  sumSquares(x: Tensor): number;
  /** x ← s·x in place. */
  scaleInPlace(x: Tensor, s: number): void;
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

export type GumbelNoise = { seed: number; stream: number } | 'argmax';

/**
 * Category → (b₀, b₁) of spec §5.3 step 6: the one-hot y maps to bits by adding its third component onto the
 * first two and dropping the last two.
 */
export const CATEGORY_BITS: readonly (readonly [number, number])[] = [
  [1, 0],
  [0, 1],
  [1, 1],
  [0, 0],
];

/** lowbias32: a 32-bit integer mix (written the same way in kernels/value_*.cu). */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Counter-based Gumbel(0, 1) noise: the same (seed, stream, index) gives the same number on every backend and
 * every run, with no generator state to checkpoint. u = ((h >> 9) + 0.5)/2²³ with h = mix(mix(mix(seed) ^ stream)
 * ^ index): 23 bits plus the half make 24 significant bits, so u is exact in f32 and lies in [2⁻²⁴, 1 − 2⁻²⁴]
 * (with more bits u rounds to 1 in f32 at the top of the range and the noise becomes +∞). g = −ln(−ln u), in f32.
 */
export function gumbelNoise(seed: number, stream: number, index: number): number {
  const u = uniformFromHash(mix32((mix32((mix32(seed >>> 0) ^ stream) >>> 0) ^ index) >>> 0));
  return Math.fround(-Math.log(Math.fround(-Math.log(u))));
}

/** A 32-bit hash → u = ((h >> 9) + 0.5)/2²³: exact in f32, in [2⁻²⁴, 1 − 2⁻²⁴] (kernels/value_gumbel_bits.cu alike). */
export function uniformFromHash(h: number): number {
  return ((h >>> 9) + 0.5) / 8388608;
}
