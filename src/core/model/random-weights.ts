import type { TensorToWrite } from '../io/safetensors.js';
import type { ModelConfig } from './config.js';
import { SeededRandom } from './seeded-random.js';
import { expectedTensors } from './weights.js';

/**
 * Random f32 weights for a config, drawn like the reference fixtures: matrices N(0, 0.08²), norm weights
 * U(0.6, 1.4), biases N(0, 0.05²). For small models made on the host (the demo model, tests); GPU-sized random
 * models are filled on the device instead.
 */
export function randomWeights(config: ModelConfig, seed: number): Record<string, TensorToWrite> {
  const rng = new SeededRandom(seed);
  const out: Record<string, TensorToWrite> = {};
  for (const [name, shape] of expectedTensors(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const draw = shape.length >= 2 ? () => 0.08 * rng.normal() : name.includes('norm') ? () => 0.6 + 0.8 * rng.uniform() : () => 0.05 * rng.normal();
    for (let i = 0; i < data.length; i++) data[i] = draw();
    out[name] = { dtype: 'F32', shape: [...shape], data };
  }
  return out;
}
