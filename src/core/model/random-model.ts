import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import { LlamaModel } from './llama.js';
import { assembleWeights, expectedTensors } from './weights.js';

/**
 * A model of `config` with random weights made directly on the backend (on a GPU: no host copy), for measuring
 * speed and memory at real sizes without a checkpoint. Matrices N(0, std²) like transformers' initializer
 * (std 0.02), norm weights U(0.9, 1.1), biases N(0, 0.02²): never zeros.
 *
 *   const model = randomModel(parseModelConfig(json, 'config.json'), backend, { seed: 0 });
 */
export function randomModel(config: ModelConfig, backend: Backend, options: { seed: number; std?: number; dtype?: 'f32' | 'bf16' }): LlamaModel {
  const dtype = options.dtype ?? (backend.activationDType === 'bf16' ? 'bf16' : 'f32');
  const std = options.std ?? 0.02;
  const tensors = new Map<string, Tensor>();
  let seed = options.seed;
  for (const [name, shape] of expectedTensors(config)) {
    const random =
      shape.length >= 2 || !name.includes('norm')
        ? ({ distribution: 'normal', std } as const)
        : ({ distribution: 'uniform', low: 0.9, high: 1.1 } as const);
    tensors.set(name, backend.randomTensor(shape, dtype, { seed: seed++, ...random }));
  }
  return new LlamaModel(config, assembleWeights(config, (name) => tensors.get(name)), backend);
}
