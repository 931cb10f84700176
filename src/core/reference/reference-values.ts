/**
 * The reference's value compressors (spec §5.8): the tensors `model.layers.{ℓ}.self_attn.value_vq_model.*` of a
 * Hugging Face checkpoint (safetensors, one file or shards with an index), the bit width from config.json's
 * `quant_bits`. Only those tensors are read — the LLM's weights stay where they are — and each is checked against
 * the shape the model and bit width give (N_c = 2·floor(D·bits/2) codebook rows, D = H_kv·D_h).
 *
 *   const v = readReferenceValues('Llama-3.1-8B-Instruct-CommVQ-2bit');   // v.bits 2, v.layers[0].params.codebook …
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { toBits, type Bits } from '../commvq/geometry.js';
import { CommvqError, OptionError } from '../errors.js';
import { SafetensorsCheckpoint, type TensorInfo } from '../io/safetensors.js';
import { parseModelConfig, type ModelConfig } from '../model/config.js';
import { toFloat32Array, viewBytes } from '../tensor/dtype.js';
import type { ValueCodebookLayer } from '../values/value-codebook-file.js';
import { compressorShape, PARAM_NAMES, paramShapes, type ParamName, type ValueCompressorShape } from '../values/value-compressor.js';
import { parseValueTensorName, VALUE_TENSOR_NAMES, valueTensorName } from './names.js';
import { readJsonFile } from '../io/read-text.js';

export interface ReferenceValues {
  config: ModelConfig;
  /** config.json as written, for provenance and for export */
  rawConfig: Record<string, unknown>;
  bits: Bits;
  shape: ValueCompressorShape;
  layers: ValueCodebookLayer[];
  /** the dtype the tensors were stored in (F32, BF16 or F16); all are read into f32 exactly */
  dtype: string;
  /** value_vq_model tensors this does not use */
  unused: string[];
  /** tensors of the LLM itself, left in place */
  modelTensors: number;
}

const READABLE: Record<string, (b: Uint8Array) => Float32Array> = {
  F32: (b) => toFloat32Array(viewBytes(b, 'f32'), 'f32'),
  BF16: (b) => toFloat32Array(viewBytes(b, 'bf16'), 'bf16'),
  F16: (b) => toFloat32Array(viewBytes(b, 'f16'), 'f16'),
};

/** The model config of a checkpoint folder with its raw JSON. */
export function readCheckpointConfig(dir: string): { config: ModelConfig; raw: Record<string, unknown> } {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new CommvqError(`${dir}: no config.json (is this a Hugging Face checkpoint folder?)`);
  const raw = readJsonFile<Record<string, unknown>>(path);
  return { config: parseModelConfig(raw, path), raw };
}

export function readReferenceValues(dir: string): ReferenceValues {
  const { config, raw } = readCheckpointConfig(dir);
  if (raw.quant_bits === undefined) throw new CommvqError(`${join(dir, 'config.json')}: no quant_bits (not a CommVQ checkpoint?)`);
  let bits: Bits;
  try {
    bits = toBits(Number(raw.quant_bits));
  } catch (err) {
    throw new CommvqError(`${join(dir, 'config.json')}: quant_bits ${JSON.stringify(raw.quant_bits)}: ${(err as OptionError).problem}`);
  }
  const D = config.numKvHeads * config.headDim;
  const shape = compressorShape(bits, D);
  const shapes = { ...paramShapes(shape), scale: [D] };
  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    const all = ckpt.list();
    const ours = all.filter((t) => parseValueTensorName(t.name));
    if (ours.length === 0) throw new CommvqError(`${dir}: no value_vq_model tensors (model.layers.{l}.self_attn.value_vq_model.*): not a CommVQ value checkpoint`);
    const known = new Set(Object.values(VALUE_TENSOR_NAMES));
    const unused = ours.filter((t) => { const p = parseValueTensorName(t.name)!; return !known.has(p.rest) || p.layer >= config.numLayers; }).map((t) => `${t.name} (${t.dtype} [${t.shape.join(', ')}])`);
    const dtypes = new Set<string>();
    const layers: ValueCodebookLayer[] = [];
    for (let layer = 0; layer < config.numLayers; layer++) {
      const read = (p: ParamName | 'scale'): Float32Array => {
        const name = valueTensorName(layer, p);
        const info: TensorInfo | undefined = ckpt.info(name);
        if (!info) throw new CommvqError(`${dir}: ${name} is missing (layer ${layer} of ${config.numLayers})`);
        if (info.shape.join() !== shapes[p].join()) {
          throw new CommvqError(`${info.file}: ${name} is [${info.shape.join(', ')}], a ${bits}-bit compressor for D = ${D} needs [${shapes[p].join(', ')}]`);
        }
        const convert = READABLE[info.dtype] ?? ((): never => { throw new CommvqError(`${info.file}: ${name} is ${info.dtype}; value compressors are read from F32, BF16 or F16`); });
        dtypes.add(info.dtype);
        return convert(ckpt.read(name));
      };
      const params = Object.fromEntries(PARAM_NAMES.map((p) => [p, read(p)])) as Record<ParamName, Float32Array>;
      layers.push({ layer, params, scale: read('scale') });
    }
    return { config, rawConfig: raw, bits, shape, layers, dtype: [...dtypes].sort().join(','), unused, modelTensors: all.length - ours.length };
  } finally {
    ckpt.close();
  }
}
