/**
 * CommVQ codebook files with seeded random entries, written as train-key and train-value name them in a run folder,
 * for a model's config: what the cache and the commands need to run, without training (seconds instead of minutes).
 * R is small by default so the host cache encodes quickly on the CPU.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { keyCodebookFileName, valueCodebookFileName, type Bits } from '../../src/core/commvq/geometry.js';
import { HALF_SIZE, LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { writeKeyCodebook } from '../../src/core/keys/format.js';
import type { ModelConfig } from '../../src/core/model/config.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { writeValueCodebook } from '../../src/core/values/value-codebook-file.js';
import { compressorShape, initCompressor, PARAM_NAMES } from '../../src/core/values/value-compressor.js';

/** Writes RUN/key-codebook-em-{bits}bit.arrow and RUN/value-codebook-{bits}bit.arrow; returns their paths. */
export function writeRandomCodebooks(run: string, config: ModelConfig, bits: Bits, residuals = 2): { key: string; value: string } {
  mkdirSync(run, { recursive: true });
  const { numLayers, numKvHeads: groups, headDim } = config;
  const rng = new SeededRandom(7 + bits);
  const keys = new Map<number, LayerKeyCodebook>();
  for (let l = 0; l < numLayers; l++) {
    const shape = { residuals, groups, halfSize: HALF_SIZE, pairs: headDim / 2 };
    keys.set(l, new LayerKeyCodebook(shape, Float32Array.from({ length: residuals * groups * 2 * HALF_SIZE * shape.pairs }, () => 0.5 * rng.normal())));
  }
  const key = join(run, keyCodebookFileName('em', bits));
  writeKeyCodebook(key, {
    method: 'em', bits, residuals, halfSize: HALF_SIZE, pairs: headDim / 2, headDim, kvHeads: groups, layout: 'PI', data: run, model: 'random', tokens: 0, heldout: 0, seed: 7,
  }, keys);
  const cpu = new CpuBackend();
  const D = groups * headDim;
  const shape = compressorShape(bits, D);
  const layers = Array.from({ length: numLayers }, (_, layer) => {
    const p = initCompressor(cpu, shape, 100 + layer);
    const params = Object.fromEntries(PARAM_NAMES.map((n) => [n, cpu.toFloat32(p[n])])) as Record<(typeof PARAM_NAMES)[number], Float32Array>;
    return { layer, params, scale: new Float32Array(D).fill(1) };
  });
  const value = join(run, valueCodebookFileName(bits));
  writeValueCodebook(value, shape, layers, { steps: 0, seed: 7 });
  return { key, value };
}
