/**
 * Seeded random CommVQ codebooks of the standard geometry (R = 11 or 21 stages of θ, N_c = 2·floor(D·bits/2) value
 * bits): what a cache needs to run at a real model's sizes without trained codebooks — measure-memory, and generate
 * and the eval commands with --random-weights. Memory and time do not depend on the values; what the cache decodes
 * from them is noise.
 *
 * Backend-neutral: θ is a host array (as read from a file), and the value compressors are drawn with the model's
 * backend (randomTensor, fromArray, zeros: every backend has them). On a GPU that is fast, and the device store copies
 * them into its own bf16/f32 tensors; `values: 'host'` then moves them to host f32 tensors layer by layer, the form
 * codebooks read from files have, so a cache factory that keeps them holds no device memory a trained run would not.
 *
 *   const books = randomCodebooks(model, 1);                      // compressors on the model's backend
 *   const kept = randomCodebooks(model, 2, { values: 'host' });    // compressors on the host
 *   disposeCodebookValues(kept);                                   // when no cache will be made from them again
 */
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { HALF_SIZE, LayerKeyCodebook } from '../keys/codebook.js';
import type { LlamaModel } from '../model/llama.js';
import { SeededRandom } from '../model/seeded-random.js';
import type { Tensor } from '../tensor/tensor.js';
import { compressorShape, initCompressor, type ValueCompressorParams } from '../values/value-compressor.js';
import { commvqGeometry, type Bits } from './geometry.js';
import type { CommvqCodebooks } from './load-commvq.js';

/** What codebooks.keyPath and valuePath say for random codebooks. */
export const RANDOM_CODEBOOK_PATH = '(random)';

export interface RandomCodebookOptions {
  /** where the value compressors are kept: on the model's backend (default) or on the host, as loaded codebooks are */
  values?: 'model' | 'host';
}

type LayerValues = { params: ValueCompressorParams; scale: Tensor };

/**
 * Codebooks of `bits` for every layer of `model`, seeded (θ by the bit width, layer l's compressor by 100 + l), so
 * every run with the same model and bits gets the same ones on the same backend.
 *
 *   const caches = createCommvqCache(model, randomCodebooks(model, 1), { capacity: 4096, prefill: 'strict' });
 */
export function randomCodebooks(model: LlamaModel, bits: Bits, o: RandomCodebookOptions = {}): CommvqCodebooks {
  const { numLayers, kvHeads, headDim } = model.cacheShape;
  const D = kvHeads * headDim;
  const rng = new SeededRandom(bits);
  const valueShape = compressorShape(bits, D);
  const shape = { residuals: commvqGeometry(bits, D).residuals, groups: kvHeads, halfSize: HALF_SIZE, pairs: headDim / 2 };
  const keys = new Map<number, LayerKeyCodebook>();
  const values = new Map<number, LayerValues>();
  const b = model.backend;
  for (let l = 0; l < numLayers; l++) {
    const theta = Float32Array.from({ length: shape.residuals * shape.groups * 2 * HALF_SIZE * shape.pairs }, () => 0.1 * rng.normal());
    keys.set(l, new LayerKeyCodebook(shape, theta));
    const layer = { params: initCompressor(b, valueShape, 100 + l), scale: b.fromArray(new Float32Array(D).fill(1), [D], 'f32') };
    values.set(l, o.values === 'host' ? toHost(model, layer) : layer); // one layer on the device at a time
  }
  return { keys, values, valueShape, keyPath: RANDOM_CODEBOOK_PATH, valuePath: RANDOM_CODEBOOK_PATH, bits: { key: bits, value: bits } };
}

/** Frees the value compressors' tensors (θ is host memory the collector takes). */
export function disposeCodebookValues(books: CommvqCodebooks): void {
  for (const v of books.values.values()) [...Object.values(v.params), v.scale].forEach((t) => t.dispose());
}

const hostBackend = new CpuBackend();

/** One layer's compressor as host f32 tensors; tensors of another backend are copied and freed. */
function toHost(model: LlamaModel, layer: LayerValues): LayerValues {
  const move = (t: Tensor): Tensor => {
    if (t.device === hostBackend.device) return t;
    const host = hostBackend.fromArray(model.backend.toFloat32(t), t.shape, 'f32');
    t.dispose();
    return host;
  };
  const params = Object.fromEntries(Object.entries(layer.params).map(([name, t]) => [name, move(t)])) as unknown as ValueCompressorParams;
  return { params, scale: move(layer.scale) };
}
