import type { LlamaModel } from '../model/llama.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainOps } from './train-ops.js';
import { decodeValues, disposeParams, encodeValues, initCompressor, type ValueCompressorParams, type ValueCompressorShape } from './value-compressor.js';
import type { LayerState } from './value-trainer.js';

/** Relative value error ‖v̂ − v‖²/‖v‖² of one layer on held-out windows, three ways. */
export interface ValueEvaluation {
  layer: number;
  tokens: number;
  /** the trained compressor, deterministic (argmax) encoding */
  trained: number;
  /** the same compressor at its initialisation */
  untrained: number;
  /** a plain per-token asymmetric quantizer at the same bits per value (min/max per token, 2^bits levels) */
  asymmetric: number;
}

/**
 * Runs the frozen model over held-out windows and measures each trained layer's value reconstruction against the
 * untrained compressor and the plain quantizer, at the same bits per value.
 */
export function evaluateValues(model: LlamaModel, ops: TrainOps, layers: Map<number, LayerState>, windows: Int32Array[], shape: ValueCompressorShape, seed: number): ValueEvaluation[] {
  const backend = model.backend;
  const sums = new Map<number, { ref: number; trained: number; untrained: number; asym: number; tokens: number }>();
  const untrained = new Map<number, ValueCompressorParams>();
  for (const l of layers.keys()) untrained.set(l, initCompressor(backend, shape, seed * 1000 + l));
  const error = (p: ValueCompressorParams, v: Tensor, ls: Tensor) => {
    const { bits, rho } = encodeValues(ops, p, v, ls);
    const vhat = decodeValues(ops, p, bits, rho, ls);
    const e = ops.squaredError(vhat, v).sum;
    [bits, rho, vhat].forEach((t) => t.dispose());
    return e;
  };
  for (const ids of windows) {
    const cache = model.createDenseCache(ids.length);
    model.forward(ids, cache, {
      logits: 'last',
      observe: (layer, kv) => {
        const state = layers.get(layer);
        if (!state) return;
        const s = sums.get(layer) ?? { ref: 0, trained: 0, untrained: 0, asym: 0, tokens: 0 };
        const v = backend.toFloat32(kv.v);
        s.ref += v.reduce((a, x) => a + x * x, 0);
        s.trained += error(state.params, kv.v, state.scale);
        s.untrained += error(untrained.get(layer)!, kv.v, state.scale);
        s.asym += asymmetricError(v, shape.featDim, shape.bits);
        s.tokens += ids.length;
        sums.set(layer, s);
      },
    }).dispose();
    cache.dispose();
  }
  untrained.forEach((p) => disposeParams(p));
  return [...sums].map(([layer, s]) => ({ layer, tokens: s.tokens, trained: s.trained / s.ref, untrained: s.untrained / s.ref, asymmetric: s.asym / s.ref }));
}

/** Σ squared error of per-token asymmetric quantization: levels min + k·(max − min)/(2^bits − 1). */
export function asymmetricError(v: Float32Array, width: number, bits: number): number {
  const levels = 2 ** bits - 1;
  let err = 0;
  for (let t = 0; t < v.length / width; t++) {
    const row = v.subarray(t * width, (t + 1) * width);
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of row) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    const step = (hi - lo) / levels || 1;
    for (const x of row) {
      const q = lo + Math.round((x - lo) / step) * step;
      err += (q - x) ** 2;
    }
  }
  return err;
}
