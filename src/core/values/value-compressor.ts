import type { Backend } from '../backend/backend.js';
import { valueCodeGroups, type Bits } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { GumbelNoise, TrainOps } from './train-ops.js';

/**
 * The value compressor of one layer (spec §5.2): LayerNorm(D) → Linear(D → inter) → GELU → Linear(inter → 4·n_e)
 * → a 4-way choice per group → 2 bits per group (N_c = 2·n_e bits per token) → decode w = b·E, then
 * v̂ = w/‖w‖·ρ·ls (§5.4). ls is make-scale's value statistic, frozen.
 */
export interface ValueCompressorShape {
  bits: Bits;
  /** D = H_kv·D_h, the value width */
  featDim: number;
  /** n_e: 4-way groups of 2 bits */
  groups: number;
  /** embed_dim = 4·n_e: the encoder's output width */
  embedDim: number;
  /** inter = min(4096, embed_dim), except embed_dim 6144 (spec §5.2) */
  inter: number;
  /** N_c = 2·n_e bits per token */
  codeBits: number;
}

/** The compressor of `bits` for values of width D (n_e and N_c from geometry.ts). */
export function compressorShape(bits: Bits, featDim: number): ValueCompressorShape {
  const groups = valueCodeGroups(bits, featDim);
  const embedDim = 4 * groups;
  const inter = embedDim === 6144 ? embedDim : Math.min(4096, embedDim);
  return { bits, featDim, groups, embedDim, inter, codeBits: 2 * groups };
}

/** Trainable tensors of one layer, f32, PyTorch names in comments. */
export interface ValueCompressorParams {
  lnGamma: Tensor; // norm1.weight [D]
  lnBeta: Tensor; // norm1.bias [D]
  w1: Tensor; // enc1.weight [inter, D]
  b1: Tensor; // enc1.bias [inter]
  w2: Tensor; // out.weight [4·n_e, inter]
  b2: Tensor; // out.bias [4·n_e]
  codebook: Tensor; // embedding E [N_c, D]
}

/** The encoder's part of the parameters (what inference encoding reads: everything but the codebook). */
export type EncoderParams = Omit<ValueCompressorParams, 'codebook'>;

export const PARAM_NAMES = ['lnGamma', 'lnBeta', 'w1', 'b1', 'w2', 'b2', 'codebook'] as const;
export type ParamName = (typeof PARAM_NAMES)[number];

export function paramShapes(s: ValueCompressorShape): Record<ParamName, number[]> {
  return {
    lnGamma: [s.featDim],
    lnBeta: [s.featDim],
    w1: [s.inter, s.featDim],
    b1: [s.inter],
    w2: [s.embedDim, s.inter],
    b2: [s.embedDim],
    codebook: [s.codeBits, s.featDim],
  };
}

/** Trainable parameters per layer (the frozen scale adds D to the reference's "total"). */
export function trainableCount(s: ValueCompressorShape): number {
  return Object.values(paramShapes(s)).reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Fresh parameters, as PyTorch initialises the reference's modules (§5.7): Linear weights and biases
 * U(−1/√fan_in, 1/√fan_in), LayerNorm γ = 1, β = 0, codebook E ~ N(0, 1). Seeded per layer.
 */
export function initCompressor(backend: Backend, s: ValueCompressorShape, seed: number): ValueCompressorParams {
  const uniform = (shape: number[], fanIn: number, k: number) =>
    backend.randomTensor(shape, 'f32', { seed: seed * 16 + k, distribution: 'uniform', low: -1 / Math.sqrt(fanIn), high: 1 / Math.sqrt(fanIn) });
  return {
    lnGamma: backend.fromArray(new Float32Array(s.featDim).fill(1), [s.featDim], 'f32'),
    lnBeta: backend.zeros([s.featDim], 'f32'),
    w1: uniform([s.inter, s.featDim], s.featDim, 1),
    b1: uniform([s.inter], s.featDim, 2),
    w2: uniform([s.embedDim, s.inter], s.inter, 3),
    b2: uniform([s.embedDim], s.inter, 4),
    codebook: backend.randomTensor([s.codeBits, s.featDim], 'f32', { seed: seed * 16 + 5, distribution: 'normal', std: 1 }),
  };
}

export function disposeParams(p: Partial<Record<ParamName, Tensor>>): void {
  Object.values(p).forEach((t) => t?.dispose());
}

/** What the encoder keeps for its backward pass. */
export interface EncoderActivations {
  uhat: Tensor;
  rho: Tensor; // [T] the per-token norm ρ
  x1: Tensor; // LayerNorm output
  xhat: Tensor;
  h1: Tensor; // enc1 output (GELU input)
  a1: Tensor; // GELU output
  logits: Tensor; // [T, 4·n_e]
}

/** The encoder up to the logits (spec §5.3 steps 1–4). v [T, D]; ls [D]. */
export function encodeLogits(ops: TrainOps, p: EncoderParams, v: Tensor, ls: Tensor): EncoderActivations {
  const { uhat, rho } = ops.prescale(v, ls);
  const { y: x1, xhat } = ops.layerNorm(uhat, p.lnGamma, p.lnBeta, 1e-5);
  const h1 = withBias(ops, ops.matmul(x1, p.w1, { transB: true }), p.b1);
  const a1 = ops.gelu(h1);
  const logits = withBias(ops, ops.matmul(a1, p.w2, { transB: true }), p.b2);
  return { uhat, rho, x1, xhat, h1, a1, logits };
}

function withBias(ops: TrainOps, x: Tensor, bias: Tensor): Tensor {
  const y = ops.addBias(x, bias);
  x.dispose();
  return y;
}

/**
 * Inference: values [T, D] → (bits [T, N_c] as 0/1 f32, ρ [T]) with the deterministic argmax encoder by default
 * (spec §10.1 item 2); the reference's stochastic Gumbel sampling with `noise = { seed, stream }`. And back.
 */
export function encodeValues(ops: TrainOps, p: EncoderParams, v: Tensor, ls: Tensor, noise: GumbelNoise = 'argmax'): { bits: Tensor; rho: Tensor } {
  const acts = encodeLogits(ops, p, v, ls);
  const { bits, soft } = ops.gumbelBits(acts.logits, 1, noise);
  soft.dispose();
  const rho = acts.rho;
  disposeActivations({ ...acts, rho: undefined });
  return { bits, rho };
}

export function decodeValues(ops: TrainOps, p: ValueCompressorParams, bits: Tensor, rho: Tensor, ls: Tensor): Tensor {
  const w = ops.matmul(bits, p.codebook);
  const v = ops.decode(w, rho, ls);
  w.dispose();
  return v;
}

export function disposeActivations(a: Partial<Record<keyof EncoderActivations, Tensor | undefined>>): void {
  Object.values(a).forEach((t) => t?.dispose());
}

/** Checks a make-scale vector before it is used as ls. */
export function checkScale(scale: Float32Array, featDim: number, source: string): void {
  if (scale.length !== featDim) throw new CommvqError(`${source}: value scale has ${scale.length} channels, the model's values have ${featDim}`);
  if (!scale.every((x) => Number.isFinite(x) && x >= 0)) throw new CommvqError(`${source}: value scale holds NaN or negative entries`);
}
