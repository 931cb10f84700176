import { CommvqError } from '../errors.js';

/** The decoder-only architectures this engine runs: Llama's block with optional q/k/v biases. */
export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export const SUPPORTED_HEAD_DIMS = [64, 128] as const;

/** RoPE as configured: `default` (θ only) or `llama3` (θ plus wavelength-dependent scaling). */
export type RopeConfig =
  | { type: 'default'; theta: number }
  | {
      type: 'llama3';
      theta: number;
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

/** A model's `config.json`, checked and named in one vocabulary (HF field names in the comments). */
export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  intermediateSize: number; // intermediate_size
  numLayers: number; // num_hidden_layers (L)
  numHeads: number; // num_attention_heads (H_q)
  numKvHeads: number; // num_key_value_heads (H_kv)
  headDim: number; // head_dim (D_h)
  rmsNormEps: number; // rms_norm_eps
  maxPositionEmbeddings: number; // max_position_embeddings: the context length
  tieWordEmbeddings: boolean; // tie_word_embeddings: lm_head shares embed_tokens
  qkvBias: boolean; // Qwen2 always; Llama's attention_bias
  oBias: boolean; // Llama's attention_bias also covers o_proj
  mlpBias: boolean; // Llama's mlp_bias
  rope: RopeConfig;
  bosTokenId?: number;
  eosTokenIds: number[];
}

/**
 * Reads a parsed `config.json`. `source` names the file in error messages.
 *
 *   const cfg = parseModelConfig(JSON.parse(readFileSync('model/config.json', 'utf8')), 'model/config.json');
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CommvqError(`${source}: not a JSON object`);
  const raw = json as Record<string, unknown>;
  const fail = (what: string): never => {
    throw new CommvqError(`${source}: ${what}`);
  };
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (v === undefined) fail(`missing field '${key}'`);
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`field '${key}' must be a number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const int = (key: string, fallback?: number): number => {
    const v = num(key, fallback);
    if (!Number.isInteger(v) || v <= 0) fail(`field '${key}' must be a positive integer, got ${v}`);
    return v;
  };

  const architecture = parseArchitecture(raw, fail);
  if ((raw.hidden_act ?? 'silu') !== 'silu') fail(`unsupported hidden_act '${String(raw.hidden_act)}' (only silu)`);
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  const headDim = int('head_dim', hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(headDim)) fail(`unsupported head_dim ${headDim} (supported: ${SUPPORTED_HEAD_DIMS.join(', ')})`);
  const slidingWindow = raw.sliding_window;
  const usesSlidingWindow = architecture === 'Qwen2ForCausalLM' ? raw.use_sliding_window === true : slidingWindow != null;
  if (usesSlidingWindow && slidingWindow != null) fail(`unsupported sliding-window attention (sliding_window=${String(slidingWindow)})`);

  const attentionBias = raw.attention_bias === true;
  return {
    architecture,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps'),
    maxPositionEmbeddings: int('max_position_embeddings'),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    qkvBias: architecture === 'Qwen2ForCausalLM' || attentionBias,
    oBias: architecture !== 'Qwen2ForCausalLM' && attentionBias,
    mlpBias: raw.mlp_bias === true,
    rope: parseRope(raw, fail),
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : undefined,
    eosTokenIds: tokenIdList(raw.eos_token_id),
  };
}

function parseArchitecture(raw: Record<string, unknown>, fail: (what: string) => never): Architecture {
  const list = raw.architectures;
  if (!Array.isArray(list) || list.length === 0) fail(`missing field 'architectures'`);
  const name = String((list as unknown[])[0]);
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
    fail(`unsupported architecture ${name} (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  return name as Architecture;
}

/** RoPE from the classic form (`rope_theta` + `rope_scaling`) or the newer `rope_parameters`. */
function parseRope(raw: Record<string, unknown>, fail: (what: string) => never): RopeConfig {
  const params = (raw.rope_parameters ?? raw.rope_scaling ?? {}) as Record<string, unknown>;
  if (typeof params !== 'object' || params === null) fail(`rope_parameters/rope_scaling must be an object`);
  const theta = Number(params.rope_theta ?? raw.rope_theta ?? 10000);
  if (!Number.isFinite(theta) || theta <= 0) fail(`rope_theta must be a positive number`);
  const type = String(params.rope_type ?? params.type ?? 'default');
  if (type === 'default') return { type, theta };
  if (type !== 'llama3') fail(`unsupported RoPE type '${type}' (supported: default, llama3)`);
  const field = (key: string): number => {
    const v = params[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`llama3 RoPE needs a number '${key}'`);
    return v as number;
  };
  return {
    type: 'llama3',
    theta,
    factor: field('factor'),
    lowFreqFactor: field('low_freq_factor'),
    highFreqFactor: field('high_freq_factor'),
    originalMaxPositionEmbeddings: field('original_max_position_embeddings'),
  };
}

/** `eos_token_id` may be a number, a list, or absent. */
export function tokenIdList(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number');
  return [];
}
