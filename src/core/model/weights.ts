import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import type { SafetensorsCheckpoint, SafetensorsDType, TensorInfo } from '../io/safetensors.js';
import type { DType } from '../tensor/dtype.js';
import { findNonFinite, type FloatDType } from '../tensor/non-finite.js';
import { shapeString, type Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';

/** One decoder block's weights, Hugging Face names and layouts ([out, in] matrices). */
export interface LayerWeights {
  inputNorm: Tensor; // input_layernorm.weight [hidden]
  qProj: Tensor; // self_attn.q_proj.weight [H_q·D_h, hidden]
  kProj: Tensor; // self_attn.k_proj.weight [H_kv·D_h, hidden]
  vProj: Tensor; // self_attn.v_proj.weight [H_kv·D_h, hidden]
  oProj: Tensor; // self_attn.o_proj.weight [hidden, H_q·D_h]
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  oBias?: Tensor;
  postNorm: Tensor; // post_attention_layernorm.weight [hidden]
  gateProj: Tensor; // mlp.gate_proj.weight [intermediate, hidden]
  upProj: Tensor; // mlp.up_proj.weight [intermediate, hidden]
  downProj: Tensor; // mlp.down_proj.weight [hidden, intermediate]
  gateBias?: Tensor;
  upBias?: Tensor;
  downBias?: Tensor;
}

export interface ModelWeights {
  embedTokens: Tensor; // model.embed_tokens.weight [V, hidden]
  layers: LayerWeights[];
  norm: Tensor; // model.norm.weight [hidden]
  lmHead: Tensor; // lm_head.weight [V, hidden], or embed_tokens itself when tied
}

/** Every tensor a config implies, with its expected shape, in checkpoint order. */
export function expectedTensors(c: ModelConfig): Map<string, Shape> {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const m = new Map<string, Shape>([['model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]]]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [c.hiddenSize]);
    m.set(`${p}self_attn.q_proj.weight`, [q, c.hiddenSize]);
    m.set(`${p}self_attn.k_proj.weight`, [kv, c.hiddenSize]);
    m.set(`${p}self_attn.v_proj.weight`, [kv, c.hiddenSize]);
    m.set(`${p}self_attn.o_proj.weight`, [c.hiddenSize, q]);
    if (c.qkvBias) {
      m.set(`${p}self_attn.q_proj.bias`, [q]);
      m.set(`${p}self_attn.k_proj.bias`, [kv]);
      m.set(`${p}self_attn.v_proj.bias`, [kv]);
    }
    if (c.oBias) m.set(`${p}self_attn.o_proj.bias`, [c.hiddenSize]);
    m.set(`${p}post_attention_layernorm.weight`, [c.hiddenSize]);
    m.set(`${p}mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    m.set(`${p}mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    m.set(`${p}mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]);
    if (c.mlpBias) {
      m.set(`${p}mlp.gate_proj.bias`, [c.intermediateSize]);
      m.set(`${p}mlp.up_proj.bias`, [c.intermediateSize]);
      m.set(`${p}mlp.down_proj.bias`, [c.hiddenSize]);
    }
  }
  m.set('model.norm.weight', [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, c.hiddenSize]);
  return m;
}

const FLOAT_DTYPES: Partial<Record<SafetensorsDType, FloatDType>> = { F32: 'f32', BF16: 'bf16', F16: 'f16' };

/**
 * Checks that a checkpoint holds every tensor a config implies, with its shape and a float dtype (from the headers
 * alone: no tensor is read). Returns the expected tensors. loadWeights runs it before any upload; measure-memory
 * runs it alone, so a model it only accounts for is checked as one that is loaded.
 */
export function checkCheckpoint(ckpt: SafetensorsCheckpoint, config: ModelConfig, source: string): Map<string, Shape> {
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const info = ckpt.info(name);
    if (!info) throw new CommvqError(`${source}: checkpoint has no tensor '${name}'`);
    if (!FLOAT_DTYPES[info.dtype]) throw new CommvqError(`${source}: tensor '${name}' has dtype ${info.dtype}; weights must be F32, BF16 or F16`);
    if (shapeString(info.shape) !== shapeString(shape)) {
      throw new CommvqError(`${source}: tensor '${name}' has shape ${shapeString(info.shape)}, config.json implies ${shapeString(shape)}`);
    }
  }
  return expected;
}

/**
 * Loads every weight a config implies from a checkpoint onto a backend, tensor by tensor (one tensor's bytes on the
 * host at a time). Names, shapes and dtypes are checked first (checkCheckpoint), so a wrong checkpoint fails before
 * any upload. `dtype` converts float weights (e.g. f32 → bf16); by default each keeps its stored dtype. A tensor
 * holding NaN or Inf is refused, naming it, before it is uploaded, unless `allowNonFinite` (see refuseNonFinite).
 */
export function loadWeights(
  ckpt: SafetensorsCheckpoint,
  config: ModelConfig,
  backend: Backend,
  options: { dtype?: DType; source: string; allowNonFinite?: boolean; onTensor?: (done: number, total: number) => void },
): ModelWeights {
  const expected = checkCheckpoint(ckpt, config, options.source);
  const tensors = new Map<string, Tensor>();
  let done = 0;
  try {
    for (const [name, shape] of expected) {
      const info = ckpt.info(name)!;
      const stored = FLOAT_DTYPES[info.dtype]!;
      const bytes = ckpt.read(name);
      if (!options.allowNonFinite) refuseNonFinite(info, bytes, stored);
      const raw = backend.fromBytes(bytes, shape, stored);
      if (options.dtype && options.dtype !== stored) {
        tensors.set(name, backend.cast(raw, options.dtype));
        raw.dispose();
      } else {
        tensors.set(name, raw);
      }
      options.onTensor?.(++done, expected.size);
    }
  } catch (err) {
    tensors.forEach((t) => t.dispose()); // a refused or unreadable tensor leaves no weights behind on a GPU
    throw err;
  }
  return assembleWeights(config, (name) => tensors.get(name));
}

/**
 * Throws when a weight holds NaN or Inf, naming its file and tensor with a count. Such weights make every activation
 * NaN: collect-kv would write NaN keys and greedy decoding would emit token 0 without a word. Checked on the stored
 * bytes, before any cast, so an f32 → bf16 conversion cannot hide or create one.
 */
function refuseNonFinite(info: TensorInfo, bytes: Uint8Array, dtype: FloatDType): void {
  const { count, first } = findNonFinite(bytes, dtype);
  if (count === 0) return;
  const total = bytes.byteLength / (dtype === 'f32' ? 4 : 2);
  throw new CommvqError(
    `${info.file}: tensor '${info.name}' has ${count} NaN/Inf among its ${total} values (the first at element ${first})`,
    'the checkpoint is damaged or was saved from a diverged run; --allow-nonfinite loads it anyway',
  );
}

/** Groups named tensors into the model's structure (names as in `expectedTensors`). */
export function assembleWeights(config: ModelConfig, get: (name: string) => Tensor | undefined): ModelWeights {
  const need = (name: string): Tensor => {
    const t = get(name);
    if (!t) throw new Error(`missing weight ${name}`);
    return t;
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      inputNorm: need(`${p}input_layernorm.weight`),
      qProj: need(`${p}self_attn.q_proj.weight`),
      kProj: need(`${p}self_attn.k_proj.weight`),
      vProj: need(`${p}self_attn.v_proj.weight`),
      oProj: need(`${p}self_attn.o_proj.weight`),
      qBias: get(`${p}self_attn.q_proj.bias`),
      kBias: get(`${p}self_attn.k_proj.bias`),
      vBias: get(`${p}self_attn.v_proj.bias`),
      oBias: get(`${p}self_attn.o_proj.bias`),
      postNorm: need(`${p}post_attention_layernorm.weight`),
      gateProj: need(`${p}mlp.gate_proj.weight`),
      upProj: need(`${p}mlp.up_proj.weight`),
      downProj: need(`${p}mlp.down_proj.weight`),
      gateBias: get(`${p}mlp.gate_proj.bias`),
      upBias: get(`${p}mlp.up_proj.bias`),
      downBias: get(`${p}mlp.down_proj.bias`),
    });
  }
  const embedTokens = need('model.embed_tokens.weight');
  return {
    embedTokens,
    layers,
    norm: need('model.norm.weight'),
    lmHead: config.tieWordEmbeddings ? embedTokens : need('lm_head.weight'),
  };
}

/** Disposes every weight tensor once (a tied lm_head is the embedding itself). */
export function disposeWeights(w: ModelWeights): void {
  const all = new Set<Tensor>([w.embedTokens, w.norm, w.lmHead]);
  for (const layer of w.layers) for (const t of Object.values(layer)) if (t) all.add(t);
  all.forEach((t) => t.dispose());
}
