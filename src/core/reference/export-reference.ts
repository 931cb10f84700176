/**
 * export-reference: a run folder's codebooks in the reference's names and layout (spec §3.6, §5.8, §6.1), for its
 * evaluation scripts:
 *   OUT/Llama-3.1-8B-Instruct-CommVQ-{b}bit-codebook/{ℓ:03d}_{g}.pt   torch.save files, centres rebuilt from θ (§3.3)
 *   OUT/Llama-3.1-8B-Instruct-CommVQ-{b}bit/  config.json (+ quant_bits), value_vq_model.safetensors, the index
 * With `model` (the base model folder) the checkpoint is whole: its shards and tokenizer files are linked in and the
 * index names every tensor, so `from_pretrained` loads it; without, it holds the value compressors only.
 * final_error and mse_loss come from an imported codebook's metadata (NaN for codebooks trained here: the
 * reference's loader never reads them). Value tensors are BF16 when every value is a bf16 number (an imported
 * bf16 checkpoint, exactly as it was), else F32.
 *
 *   await exportReference({ run: 'runs/ref2', out: 'export', model: 'Llama-3.1-8B-Instruct' });
 */
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { findRunCodebooks } from '../commvq/load-commvq.js';
import { BIT_WIDTHS, keyCodebookFileName, valueCodebookFileName, type Bits } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import { readArrowSchema } from '../io/arrow-schema.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { SafetensorsCheckpoint, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { F32Tensor, PyFloat, torchSave } from '../io/torch-save.js';
import { centresFromTheta } from '../keys/codebook.js';
import { readKeyCodebook } from '../keys/format.js';
import { fromFloat32Array } from '../tensor/dtype.js';
import { readValueCodebook } from '../values/value-codebook-file.js';
import { PARAM_NAMES, type ParamName } from '../values/value-compressor.js';
import { commvqConfigFields, keyFileName, parseValueTensorName, referenceDirNames, valueTensorName } from './names.js';
import { readCheckpointConfig } from './reference-values.js';

export interface ExportReferenceOptions {
  run: string;
  out: string;
  /** which width to export when the run holds both */
  bits?: Bits;
  /** the base model folder: config.json, and its weights and tokenizer linked into the checkpoint */
  model?: string;
  /** replace the two output folders if they exist */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface ExportReferenceResult {
  keysDir: string;
  valuesDir: string;
  bits: number;
  layers: number;
  residuals: number;
  groups: number;
  keyFiles: number;
  valueDtype: 'BF16' | 'F32';
  /** the base model's tensors the index names (0: value compressors only) */
  modelTensors: number;
}

export const VALUE_SHARD = 'value_vq_model.safetensors';

export async function exportReference(o: ExportReferenceOptions): Promise<ExportReferenceResult> {
  const bits = o.bits ?? onlyWidth(o.run);
  const paths = findRunCodebooks(o.run, bits);
  const key = readKeyCodebook(paths.key);
  const keyMeta = (await readArrowSchema(paths.key)).metadata;
  const cpu = new CpuBackend();
  const value = readValueCodebook(paths.value, cpu);
  const layers = [...key.layers.keys()].sort((a, b) => a - b);
  const valueLayers = [...value.layers.keys()].sort((a, b) => a - b);
  if (layers.join() !== valueLayers.join()) throw new CommvqError(`${o.run}: the key codebook has layers ${layers.join(',')}, the value codebook ${valueLayers.join(',')}`);
  if (layers.some((l, i) => l !== i)) throw new CommvqError(`${paths.key}: layers ${layers.join(',')}; the reference needs every layer from 0`);
  const { residuals, halfSize, pairs } = key.meta;
  const groups = key.meta.kvHeads;
  if (groups * key.meta.headDim !== value.shape.featDim) throw new CommvqError(`${o.run}: keys are ${groups} × ${key.meta.headDim} wide, values ${value.shape.featDim}`);

  const configSource = o.model ?? value.metadata.get('commvq.model') ?? '';
  if (!configSource || !existsSync(join(configSource, 'config.json'))) {
    throw new CommvqError(`${paths.value}: no model folder with a config.json to build the checkpoint's config from${configSource ? ` (${configSource})` : ''}`, 'pass --model with the base model folder');
  }
  const { config, raw } = readCheckpointConfig(configSource);
  if (config.numLayers !== layers.length || config.numKvHeads !== groups || config.headDim !== key.meta.headDim) {
    throw new CommvqError(`${configSource}: a model of ${config.numLayers} layers, ${config.numKvHeads} KV heads of ${config.headDim}; the codebooks are for ${layers.length}, ${groups} of ${key.meta.headDim}`);
  }
  const modelShards = o.model ? baseModelShards(o.model) : { files: [], tensors: new Map<string, string>() };

  const names = referenceDirNames(bits);
  const keysDir = join(o.out, names.keys);
  const valuesDir = join(o.out, names.values);
  for (const d of [keysDir, valuesDir]) {
    if (existsSync(d) && readdirSync(d).length > 0) {
      if (!o.force) throw new CommvqError(`${d} already exists`, 'export into another folder, or pass --force to replace it');
      rmSync(d, { recursive: true });
    }
  }

  // values: one shard of every layer's compressor, bf16 when that loses nothing
  const tensors: Record<string, { data: Float32Array; shape: number[] }> = {};
  for (const l of layers) {
    const v = value.layers.get(l)!;
    for (const p of [...PARAM_NAMES, 'scale'] as (ParamName | 'scale')[]) {
      const t = p === 'scale' ? v.scale : v.params[p];
      tensors[valueTensorName(l, p)] = { data: cpu.toFloat32(t), shape: [...t.shape] };
    }
  }
  const bf16 = Object.values(tensors).every((t) => exactInBf16(t.data));
  const toWrite: Record<string, TensorToWrite> = Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, { dtype: bf16 ? 'BF16' : 'F32', shape: t.shape, data: bf16 ? fromFloat32Array(t.data, 'bf16') : t.data }]));
  const referenceFields = parseJson(value.metadata.get('commvq.reference_config')) ?? commvqConfigFields(bits);
  mkdirSync(valuesDir, { recursive: true });
  writeSafetensors(join(valuesDir, VALUE_SHARD), toWrite, { format: 'pt' });
  const weightMap: Record<string, string> = Object.fromEntries([...modelShards.tensors, ...Object.keys(toWrite).map((n) => [n, VALUE_SHARD] as const)]);
  const totalSize = Object.values(toWrite).reduce((n, t) => n + t.data.byteLength, 0);
  writeJson(join(valuesDir, 'model.safetensors.index.json'), { metadata: { total_size: totalSize }, weight_map: weightMap });
  writeJson(join(valuesDir, 'config.json'), { ...raw, ...referenceFields, quant_bits: bits });
  for (const f of modelShards.files) symlinkSync(resolve(o.model!, f), join(valuesDir, f));

  // keys: one torch.save file per layer and group
  const finalError = parseJson(keyMeta.get('commvq.final_error')) as (number | null)[][] | undefined;
  const mseLoss = parseJson(keyMeta.get('commvq.mse_loss')) as (number | null)[][][] | undefined;
  mkdirSync(keysDir, { recursive: true });
  const total = layers.length * groups;
  for (const l of layers) {
    const cb = key.layers.get(l)!;
    for (let g = 0; g < groups; g++) {
      const steps = Array.from({ length: residuals }, (_, r) => {
        const theta = cb.stage(r, g).slice();
        return new Map<string, F32Tensor>([
          ['mse_loss', new F32Tensor(Float32Array.of(num(mseLoss?.[l]?.[g]?.[r])), [])],
          ['theta', new F32Tensor(theta, [2 * halfSize, pairs])],
          ['clustering_centers', new F32Tensor(centresFromTheta(theta, halfSize, pairs), [halfSize * halfSize, 2 * pairs])],
        ]);
      });
      torchSave(join(keysDir, keyFileName(l, g)), new Map<string, PyFloat | Map<string, F32Tensor>[]>([['final_error', new PyFloat(num(finalError?.[l]?.[g]))], ['steps', steps]]));
      o.onProgress?.(l * groups + g + 1, total);
    }
  }
  return { keysDir, valuesDir, bits, layers: layers.length, residuals, groups, keyFiles: total, valueDtype: bf16 ? 'BF16' : 'F32', modelTensors: modelShards.tensors.size };
}

/** The one width a run holds codebooks of; both → the caller must choose. */
function onlyWidth(run: string): Bits {
  const have = BIT_WIDTHS.filter((b) => existsSync(join(run, valueCodebookFileName(b))) && ['em', 'e2e'].some((m) => existsSync(join(run, keyCodebookFileName(m as 'em', b)))));
  if (have.length === 1) return have[0]!;
  if (have.length === 0) throw new CommvqError(`${run}: no codebooks (${keyCodebookFileName('em', 1)} and ${valueCodebookFileName(1)}, or the 2-bit ones)`, 'train them with commvq train-key and train-value, or import them with commvq import-reference');
  throw new CommvqError(`${run}: holds 1-bit and 2-bit codebooks`, 'choose one with --bits');
}

/** The base model's shards (to link) and its tensors (for the index), refusing one that already holds compressors. */
function baseModelShards(dir: string): { files: string[]; tensors: Map<string, string> } {
  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    const list = ckpt.list();
    const clash = list.find((t) => parseValueTensorName(t.name));
    if (clash) throw new CommvqError(`${clash.file}: already holds value compressors (${clash.name})`, 'pass the base model folder, not a CommVQ checkpoint');
    const tensors = new Map(list.map((t) => [t.name, basename(t.file)] as const));
    const tokenizer = readdirSync(dir).filter((f) => /^(tokenizer.*|special_tokens_map\.json|generation_config\.json)$/.test(f));
    return { files: [...new Set(tensors.values()), ...tokenizer], tensors };
  } finally {
    ckpt.close();
  }
}

/** Every value a bf16 number: its low 16 bits zero (a bf16 → f32 widening is exactly that). */
function exactInBf16(a: Float32Array): boolean {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) if ((bits[i]! & 0xffff) !== 0) return false;
  return true;
}

function num(v: number | null | undefined): number {
  return typeof v === 'number' ? v : NaN;
}

function parseJson(s: string | undefined): unknown {
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return undefined;
  }
}

function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, [Buffer.from(`${JSON.stringify(value, null, 2)}\n`)]);
}
