import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../io/safetensors.js';
import { parseModelConfig } from './config.js';
import { randomWeights } from './random-weights.js';

/**
 * The embedded default model: a tiny Llama (2 layers, hidden 128, GQA 2:1, head_dim 64, llama3 RoPE) with seeded
 * random weights and a byte-level tokenizer (one token per byte, no merges), written as an ordinary Hugging Face
 * folder. It needs no download, is the same on every machine, and exercises the same loading code as a real model.
 * Its text is noise: it exists to run the pipeline end to end, not to say anything.
 *
 *   writeDemoModel('/tmp/demo'); loadModel('/tmp/demo', { backend });
 */
export const DEMO_SEED = 20250618;

export const DEMO_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 258,
  hidden_size: 128,
  intermediate_size: 384,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 64,
  hidden_act: 'silu',
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 1024 },
  tie_word_embeddings: false,
  bos_token_id: 256,
  eos_token_id: 257,
  torch_dtype: 'float32',
};

export function writeDemoModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(DEMO_CONFIG, null, 1));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 256, eos_token_id: 257 }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(byteLevelTokenizer()));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' }));
  const config = parseModelConfig(DEMO_CONFIG, 'demo config');
  writeSafetensors(join(dir, 'model.safetensors'), randomWeights(config, DEMO_SEED));
}

/**
 * GPT-2's byte-to-character table: printable bytes map to themselves, the rest to code points from 256 on, so
 * every byte string is a string of visible characters (what byte-level BPE vocabularies are written in).
 */
function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : 256 + extra++));
}

function byteLevelTokenizer(): object {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((ch, id) => (vocab[ch] = id));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(256, '<|begin_of_text|>'), special(257, '<|end_of_text|>')],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}
