import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { SafetensorsCheckpoint } from '../io/safetensors.js';
import type { DType } from '../tensor/dtype.js';
import { readJson, TextTokenizer } from '../tokenizer/text-tokenizer.js';
import { parseModelConfig, tokenIdList, type ModelConfig } from './config.js';
import { LlamaModel } from './llama.js';
import { randomModel } from './random-model.js';
import { checkCheckpoint, loadWeights } from './weights.js';

/** A Hugging Face model folder, loaded: the model on a backend, its tokenizer, and when to stop generating. */
export interface LoadedModel {
  dir: string;
  config: ModelConfig;
  model: LlamaModel;
  tokenizer: TextTokenizer;
  /** generation_config.json's eos_token_id list, else config.json's */
  eosTokenIds: number[];
}

export interface LoadModelOptions {
  backend: Backend;
  /** convert float weights to this dtype while loading (default: as stored on the CPU, bf16 on a GPU) */
  dtype?: DType;
  onProgress?: (done: number, total: number) => void;
  /** skip the safetensors files: random weights made on the backend from config.json (seeded, see randomModel) */
  randomWeights?: boolean;
  /**
   * load weights that hold NaN or Inf (refused by default, naming the tensor): for a checkpoint whose bad values sit
   * where no input reaches them, such as unused embedding rows. Non-finite logits or K/V are still refused.
   */
  allowNonFinite?: boolean;
}

/**
 * Loads `config.json`, the safetensors weights (single or sharded), `tokenizer.json` and `generation_config.json`.
 *
 *   const { model, tokenizer } = loadModel('tiny-llama', { backend: new CpuBackend() });
 */
export function loadModel(dir: string, options: LoadModelOptions): LoadedModel {
  const config = readModelFolderConfig(dir);
  const tokenizer = TextTokenizer.fromFolder(dir);
  const eosTokenIds = readEos(dir, config);
  if (options.randomWeights) {
    const dtype = options.dtype === 'f32' || options.dtype === 'bf16' ? options.dtype : undefined;
    return { dir, config, model: randomModel(config, options.backend, { seed: 0, dtype }), tokenizer, eosTokenIds };
  }
  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    const dtype = options.dtype ?? (options.backend.activationDType === 'bf16' ? 'bf16' : undefined);
    const weights = loadWeights(ckpt, config, options.backend, { dtype, source: dir, allowNonFinite: options.allowNonFinite, onTensor: options.onProgress });
    return { dir, config, model: new LlamaModel(config, weights, options.backend), tokenizer, eosTokenIds };
  } finally {
    ckpt.close();
  }
}

/**
 * A model folder checked as loadModel checks it, without loading: config.json, and the safetensors headers against
 * it (every tensor, its shape and dtype; a corrupt or truncated file is named). The tokenizer is not read: the
 * callers (measure-memory) never tokenize. Returns the config.
 *
 *   const config = checkModelFolder('Llama-3.1-8B-Instruct');
 */
export function checkModelFolder(dir: string): ModelConfig {
  const config = readModelFolderConfig(dir);
  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    checkCheckpoint(ckpt, config, dir);
  } finally {
    ckpt.close();
  }
  return config;
}

/** DIR/config.json of a model folder that must exist. */
function readModelFolderConfig(dir: string): ModelConfig {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CommvqError(`${dir}: model folder not found`);
  const configPath = join(dir, 'config.json');
  return parseModelConfig(readJson(configPath), configPath);
}

function readEos(dir: string, config: ModelConfig): number[] {
  const path = join(dir, 'generation_config.json');
  const fromGeneration = existsSync(path) ? tokenIdList(readJson(path).eos_token_id) : [];
  return fromGeneration.length > 0 ? fromGeneration : config.eosTokenIds;
}
