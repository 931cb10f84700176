/**
 * A synthetic set of the CommVQ reference's released files (spec §3.6, §5.8) for a fixture model, written from
 * TypeScript so tests need no Python: a value checkpoint folder (config.json with quant_bits, the model's own
 * weights and the value compressors in two safetensors shards with an index, bf16 as released) and a key codebook
 * folder of `{l:03d}_{g}.pt` torch.save files whose pickles are CPython's bytes (test/io/pickle.test.ts).
 * scripts/make_reference_fixtures.py writes the same set with PyTorch.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { F32Tensor, PyFloat, torchSave } from '../../src/core/io/torch-save.js';
import { centresFromTheta } from '../../src/core/keys/codebook.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { commvqConfigFields, keyFileName, valueTensorName } from '../../src/core/reference/names.js';
import { fromFloat32Array, toFloat32Array } from '../../src/core/tensor/dtype.js';
import { compressorShape, PARAM_NAMES, paramShapes } from '../../src/core/values/value-compressor.js';

export interface ReferenceSetOptions {
  bits: 1 | 2;
  residuals: number;
  /** N_h (the reference: 64); small keeps the files small */
  halfSize: number;
  seed?: number;
  /** the value tensors' dtype (released: BF16) */
  dtype?: 'BF16' | 'F32';
  /** an extra tensor under value_vq_model that the importer does not use */
  extraValueTensor?: boolean;
}

export interface ReferenceSet {
  values: string;
  keys: string;
  /** what was written, f32, for comparison: θ [l][g][r], value tensors by reference name */
  theta: Float32Array[][][];
  valueTensors: Map<string, Float32Array>;
  finalError: number[][];
  mseLoss: number[][][];
}

export function writeReferenceSet(dir: string, modelDir: string, o: ReferenceSetOptions): ReferenceSet {
  const rawConfig = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = parseModelConfig(rawConfig, modelDir);
  const rng = new SeededRandom(o.seed ?? 5);
  const values = join(dir, `Llama-3.1-8B-Instruct-CommVQ-${o.bits}bit`);
  const keys = join(dir, `Llama-3.1-8B-Instruct-CommVQ-${o.bits}bit-codebook`);
  mkdirSync(values, { recursive: true });
  mkdirSync(keys, { recursive: true });
  const dtype = o.dtype ?? 'BF16';

  const D = config.numKvHeads * config.headDim;
  const shapes = { ...paramShapes(compressorShape(o.bits, D)), scale: [D] };
  const valueTensors = new Map<string, Float32Array>();
  const shards: Record<string, TensorToWrite>[] = [{}, {}];
  for (let l = 0; l < config.numLayers; l++) {
    for (const p of [...PARAM_NAMES, 'scale'] as const) {
      const n = shapes[p].reduce((a, b) => a * b, 1);
      const raw = Float32Array.from({ length: n }, () => (p === 'scale' ? 0.5 + rng.uniform() : 0.1 * rng.normal()));
      const stored = fromFloat32Array(raw, dtype === 'BF16' ? 'bf16' : 'f32');
      valueTensors.set(valueTensorName(l, p), toFloat32Array(stored, dtype === 'BF16' ? 'bf16' : 'f32'));
      shards[l % 2]![valueTensorName(l, p)] = { dtype, shape: shapes[p], data: stored };
    }
  }
  if (o.extraValueTensor) shards[1]!['model.layers.0.self_attn.value_vq_model.codebook_usage'] = { dtype: 'F32', shape: [4], data: Float32Array.of(1, 2, 3, 4) };
  const llm = new SafetensorsFile(join(modelDir, 'model.safetensors'));
  for (const t of llm.tensors.values()) shards[0]![t.name] = { dtype: t.dtype, shape: t.shape, data: llm.read(t.name) };
  llm.close();
  const names = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  shards.forEach((s, i) => writeSafetensors(join(values, names[i]!), s, { format: 'pt' }));
  const weightMap = Object.fromEntries(shards.flatMap((s, i) => Object.keys(s).map((n) => [n, names[i]!])));
  writeFileSync(join(values, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  // finetune.py's config: quant_bits written by Python as a float
  const text = JSON.stringify({ ...rawConfig, ...commvqConfigFields(o.bits), quant_bits: o.bits }, null, 2).replace(/"quant_bits": (\d)$/m, '"quant_bits": $1.0');
  writeFileSync(join(values, 'config.json'), text);

  const pairs = config.headDim / 2;
  const theta: Float32Array[][][] = [];
  const finalError: number[][] = [];
  const mseLoss: number[][][] = [];
  for (let l = 0; l < config.numLayers; l++) {
    theta.push([]);
    finalError.push([]);
    mseLoss.push([]);
    for (let g = 0; g < config.numKvHeads; g++) {
      const thetas = Array.from({ length: o.residuals }, () => Float32Array.from({ length: 2 * o.halfSize * pairs }, () => 0.05 * rng.normal()));
      const losses = thetas.map(() => Math.fround(1e-3 * rng.uniform()));
      const fe = 1e-4 * rng.uniform();
      theta[l]!.push(thetas);
      mseLoss[l]!.push(losses);
      finalError[l]!.push(fe);
      const steps = thetas.map((t, r) => new Map([
        ['mse_loss', new F32Tensor(Float32Array.of(losses[r]!), [])],
        ['theta', new F32Tensor(t, [2 * o.halfSize, pairs])],
        ['clustering_centers', new F32Tensor(centresFromTheta(t, o.halfSize, pairs), [o.halfSize * o.halfSize, 2 * pairs])],
      ]));
      torchSave(join(keys, keyFileName(l, g)), new Map<string, PyFloat | Map<string, F32Tensor>[]>([['final_error', new PyFloat(fe)], ['steps', steps]]));
    }
  }
  return { values, keys, theta, valueTensors, finalError, mseLoss };
}
