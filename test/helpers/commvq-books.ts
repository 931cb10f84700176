/**
 * Seeded random CommVQ codebooks for a model (tests that pin the cache's arithmetic, not its quality): θ of 3 stages
 * per layer and value compressors of 1 or 2 bits, host tensors.
 */
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import type { CommvqCodebooks } from '../../src/core/commvq/load-commvq.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import type { LlamaModel } from '../../src/core/model/llama.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { compressorShape, initCompressor, type ValueCompressorParams } from '../../src/core/values/value-compressor.js';

/** Seeded random codebooks for the model: θ of 3 stages per layer, value compressors of `bits` (host tensors). */
export function randomBooks(model: LlamaModel, bits: 1 | 2): CommvqCodebooks {
  const cpu = new CpuBackend();
  const { numLayers, kvHeads, headDim } = model.cacheShape;
  const D = kvHeads * headDim;
  const rng = new SeededRandom(100 + bits);
  const valueShape = compressorShape(bits, D);
  const keys = new Map<number, LayerKeyCodebook>();
  const values = new Map<number, { params: ValueCompressorParams; scale: Tensor }>();
  for (let l = 0; l < numLayers; l++) {
    const theta = Float32Array.from({ length: 3 * kvHeads * 128 * (headDim / 2) }, () => 0.05 * rng.normal());
    keys.set(l, new LayerKeyCodebook({ residuals: 3, groups: kvHeads, halfSize: 64, pairs: headDim / 2 }, theta));
    values.set(l, { params: initCompressor(cpu, valueShape, 7 + l), scale: cpu.fromArray(Float32Array.from({ length: D }, () => 0.5 + rng.uniform()), [D], 'f32') });
  }
  return { keys, values, valueShape, keyPath: '(random)', valuePath: '(random)', bits: { key: bits, value: bits } };
}

