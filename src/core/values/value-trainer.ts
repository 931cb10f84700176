import type { LlamaModel } from '../model/llama.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainOps } from './train-ops.js';
import { disposeActivations, encodeLogits, PARAM_NAMES, paramShapes, type ParamName, type ValueCompressorParams, type ValueCompressorShape } from './value-compressor.js';

/** Optimiser settings (spec §5.6). */
export interface OptimizerSettings {
  lr: number;
  schedule: 'cosine' | 'constant';
  warmup: number;
  steps: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clip: number;
}

export const DEFAULT_OPTIMIZER: Omit<OptimizerSettings, 'steps' | 'schedule' | 'warmup'> = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  clip: 1.0,
};

/**
 * The learning rate at 0-based scheduler iteration s, as DeepSpeed's schedulers in the reference (§5.6):
 * a log warm-up lr·ln(s+1)/ln(warmup) (so step 0 runs at lr 0), then constant (WarmupLR, the 2-bit script) or a
 * cosine decay to 1e-4 of lr (WarmupCosineLR, the 1-bit script).
 */
export function learningRate(s: number, o: Pick<OptimizerSettings, 'lr' | 'schedule' | 'warmup' | 'steps'>): number {
  if (s < o.warmup && o.warmup > 1) return (o.lr * Math.log(s + 1)) / Math.log(o.warmup);
  if (o.schedule === 'constant') return o.lr;
  const progress = (s - o.warmup + 1) / Math.max(1, o.steps - o.warmup);
  return o.lr * Math.max(0, 1e-4 + ((1 - 1e-4) * (1 + Math.cos(Math.PI * progress))) / 2);
}

/** One layer's trainable state: parameters, their gradients, and AdamW's moments (all f32). */
export interface LayerState {
  params: ValueCompressorParams;
  grads: Record<ParamName, Tensor>;
  m: Record<ParamName, Tensor>;
  v: Record<ParamName, Tensor>;
  /** make-scale's value statistic of this layer [D], frozen */
  scale: Tensor;
}

export function newLayerState(ops: TrainOps, shape: ValueCompressorShape, params: ValueCompressorParams, scale: Tensor): LayerState {
  const zeros = () => Object.fromEntries(PARAM_NAMES.map((n) => [n, ops.backend.zeros(paramShapes(shape)[n], 'f32')])) as Record<ParamName, Tensor>;
  return { params, grads: zeros(), m: zeros(), v: zeros(), scale };
}

export interface StepLosses {
  /** (1/L)·Σ_ℓ value_mse_ℓ / 2: the reference's kv_mse (key MSE is 0: keys are exact) */
  valueMse: number;
  /** (1/L)·Σ_ℓ attn_mse_ℓ: the reference's kv_vq */
  attentionMse: number;
  /** valueMse + attentionMse */
  loss: number;
  gradNorm: number;
  lr: number;
}

/**
 * One training step on one window (spec §5.1, §5.5): the frozen model runs over `ids` with exact activations; at
 * every trained layer, from its exact q, k, v and attention output o:
 *   ℓ = encoder logits of v;
 *   quantized pass: bits_A ~ GumbelHard(ℓ), V̂ = decode(bits_A), ô = o_proj(attention(q, k, V̂)),
 *     attn_mse = mean((ô − o)²)             → gradients through o_proj, attention (w.r.t. V̂), decode, E and ℓ;
 *   value pass: bits_B ~ GumbelHard(ℓ) (a fresh sample), V̂′ = decode(bits_B), value_mse = mean((V̂′ − v)²);
 *   loss = (1/L)·Σ_ℓ (value_mse_ℓ/2 + attn_mse_ℓ).
 * Each layer's output uses the exact o, so errors never propagate between layers (layer-local teacher forcing).
 * Then the global gradient norm is clipped to `clip` and every parameter takes an AdamW step.
 * `stepIndex` (0-based) picks the learning rate and the Gumbel noise streams, so a resumed run repeats exactly.
 * Data parallelism splits this into its parts: zeroGradients, accumulateWindow per window, a reduction, applyUpdate.
 */
export function trainValueStep(
  model: LlamaModel,
  ops: TrainOps,
  layers: Map<number, LayerState>,
  ids: Int32Array,
  stepIndex: number,
  o: OptimizerSettings & { seed: number },
): StepLosses {
  zeroGradients(ops, layers);
  const sums = accumulateWindow(model, ops, layers, ids, stepIndex, o);
  const { gradNorm, lr } = applyUpdate(ops, layers, stepIndex, o);
  return { ...windowLosses(sums, 1, layers.size), gradNorm, lr };
}

/** Sets every gradient to 0 before a step's windows accumulate into them. */
export function zeroGradients(ops: TrainOps, layers: Map<number, LayerState>): void {
  for (const state of layers.values()) Object.values(state.grads).forEach((g) => ops.scaleInPlace(g, 0));
}

/** Σ over windows of Σ_ℓ value_mse_ℓ and of Σ_ℓ attn_mse_ℓ: what a step's losses are made from (summed over ranks). */
export interface WindowSums {
  valueSum: number;
  attnSum: number;
}

/** A step's losses from the sums over its `windows` windows: the means the reference logs. */
export function windowLosses(s: WindowSums, windows: number, layerCount: number): Pick<StepLosses, 'valueMse' | 'attentionMse' | 'loss'> {
  const valueMse = s.valueSum / windows / (2 * layerCount);
  const attentionMse = s.attnSum / windows / layerCount;
  return { valueMse, attentionMse, loss: valueMse + attentionMse };
}

/**
 * Forward and backward of one window, adding its gradients (of that window's mean loss) into the layers' grads.
 * `windowIndex` picks the Gumbel noise streams: step · (windows per step) + the window's place in the global batch,
 * so the noise of a window is the same whichever rank runs it (one window per step: the step index).
 * `onLayerDone(layer)` is called once the layer's gradients of this window are enqueued, while later layers are not.
 */
export function accumulateWindow(
  model: LlamaModel,
  ops: TrainOps,
  layers: Map<number, LayerState>,
  ids: Int32Array,
  windowIndex: number,
  o: { seed: number; onLayerDone?: (layer: number) => void },
): WindowSums {
  const backend = model.backend;
  const c = model.config;
  const L = layers.size;
  const T = ids.length;
  const hidden = c.hiddenSize;
  let valueSum = 0;
  let attnSum = 0;
  const cache = model.createDenseCache(T);
  const logits = model.forward(ids, cache, {
    logits: 'last',
    observeAttention: (layer, a) => {
      const state = layers.get(layer);
      if (!state) return;
      const { params: p, grads: g, scale: ls } = state;
      const D = c.numKvHeads * c.headDim;
      const acts = encodeLogits(ops, p, a.v, ls);
      const dLogits = backend.zeros(acts.logits.shape, 'f32');
      const stream = (pass: number) => ((windowIndex * c.numLayers + layer) * 2 + pass) >>> 0;

      // quantized pass: attention with exact q, k and decoded values, compared after o_proj
      const A = ops.gumbelBits(acts.logits, 1, { seed: o.seed, stream: stream(0) });
      const wA = ops.matmul(A.bits, p.codebook); // [T, D]
      const vA = ops.decode(wA, acts.rho, ls);
      const shape = { queryHeads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, qStart: 0, kvLength: T };
      const attnA = backend.attention(a.q, a.k, vA, shape);
      const oA = backend.linear(attnA, model.weights.layers[layer]!.oProj, model.weights.layers[layer]!.oBias);
      const attnErr = ops.squaredError(oA, a.o, 1 / (T * hidden * L));
      attnSum += attnErr.sum / (T * hidden);
      const dAttn = ops.matmul(attnErr.grad!, model.weights.layers[layer]!.oProj); // ô = attn·Woᵀ → d attn = dô·Wo [hidden, H_q·D_h]
      const dvA = ops.attentionValueGrad(a.q, a.k, dAttn, shape);
      const dwA = ops.decodeBackward(dvA, wA, acts.rho, ls);
      ops.matmul(A.bits, dwA, { transA: true, accumulate: g.codebook });
      const dBitsA = ops.matmul(dwA, p.codebook, { transB: true });
      ops.gumbelBitsBackward(dBitsA, A.soft, 1, dLogits);
      [A.bits, A.soft, wA, vA, attnA, oA, attnErr.grad!, dAttn, dvA, dwA, dBitsA].forEach((t) => t.dispose());

      // value pass: a fresh sample, compared with the exact values
      const B = ops.gumbelBits(acts.logits, 1, { seed: o.seed, stream: stream(1) });
      const wB = ops.matmul(B.bits, p.codebook);
      const vB = ops.decode(wB, acts.rho, ls);
      const valueErr = ops.squaredError(vB, a.v, 1 / (T * D * 2 * L));
      valueSum += valueErr.sum / (T * D);
      const dwB = ops.decodeBackward(valueErr.grad!, wB, acts.rho, ls);
      ops.matmul(B.bits, dwB, { transA: true, accumulate: g.codebook });
      const dBitsB = ops.matmul(dwB, p.codebook, { transB: true });
      ops.gumbelBitsBackward(dBitsB, B.soft, 1, dLogits);
      [B.bits, B.soft, wB, vB, valueErr.grad!, dwB, dBitsB].forEach((t) => t.dispose());

      // encoder backward: out, GELU, enc1, LayerNorm's γ and β
      ops.matmul(dLogits, acts.a1, { transA: true, accumulate: g.w2 });
      ops.sumRowsInto(dLogits, g.b2);
      const da1 = ops.matmul(dLogits, p.w2);
      const dh1 = ops.geluBackward(da1, acts.h1);
      ops.matmul(dh1, acts.x1, { transA: true, accumulate: g.w1 });
      ops.sumRowsInto(dh1, g.b1);
      const dx1 = ops.matmul(dh1, p.w1);
      ops.layerNormParamGrad(dx1, acts.xhat, g.lnGamma, g.lnBeta);
      [dLogits, da1, dh1, dx1].forEach((t) => t.dispose());
      disposeActivations(acts);
      o.onLayerDone?.(layer);
    },
  });
  logits.dispose();
  cache.dispose();
  return { valueSum, attnSum };
}

/** Clips the global gradient norm to `clip` and takes one AdamW step on every parameter (all ranks alike). */
export function applyUpdate(ops: TrainOps, layers: Map<number, LayerState>, stepIndex: number, o: OptimizerSettings): { gradNorm: number; lr: number } {
  let squares = 0;
  for (const state of layers.values()) for (const grad of Object.values(state.grads)) squares += ops.sumSquares(grad);
  const gradNorm = Math.sqrt(squares);
  const clip = gradNorm > o.clip ? o.clip / (gradNorm + 1e-6) : 1;
  const lr = learningRate(stepIndex, o);
  for (const state of layers.values()) {
    for (const name of PARAM_NAMES) {
      if (clip !== 1) ops.scaleInPlace(state.grads[name], clip);
      ops.adamw(state.params[name], state.grads[name], state.m[name], state.v[name], {
        lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: stepIndex + 1,
      });
    }
  }
  return { gradNorm, lr };
}
