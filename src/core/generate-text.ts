import type { Backend } from './backend/backend.js';
import type { PrefillMode } from './commvq/commvq-cache.js';
import { createCommvqCache, loadCommvqCodebooks } from './commvq/load-commvq.js';
import { CommvqError } from './errors.js';
import { generateGreedy, type GenerateResult } from './model/generate.js';
import { loadModel } from './model/load-model.js';
import type { DType } from './tensor/dtype.js';

export interface GenerateTextOptions {
  modelDir: string;
  prompt: string;
  backend: Backend;
  maxNewTokens: number;
  /** wrap the prompt as one user message in the model's chat template */
  chat?: boolean;
  /** keep generating past end-of-sequence tokens (for timing) */
  ignoreEos?: boolean;
  dtype?: DType;
  /** ignore the checkpoint: weights drawn at random on the backend from config.json (speed and memory at real sizes) */
  randomWeights?: boolean;
  /** the KV cache: exact (default) or CommVQ codes from trained codebooks */
  cache?: CacheChoice;
  /** prompt tokens per forward (default: the whole prompt); CommVQ needs prefill strict for chunks */
  prefillChunk?: number;
  onLoadProgress?: (done: number, total: number) => void;
  onToken?: (id: number, index: number) => void;
}

export type CacheChoice =
  | { kind: 'dense' }
  | { kind: 'commvq'; keyCodebook: string; valueCodebook: string; prefill?: PrefillMode; window?: number; sinks?: number; valueEncoding?: 'argmax' | { gumbelSeed: number } };

export interface GenerateTextResult extends GenerateResult {
  promptIds: number[];
  text: string;
  /** bytes the KV cache held at the end */
  cacheBytes: number;
}

/**
 * Loads a model folder, tokenizes the prompt (through the chat template with `chat`), and continues it greedily.
 *
 *   const r = await generateText({ modelDir: 'tiny-llama', prompt: 'The pass key is', backend, maxNewTokens: 8 });
 */
export function generateText(options: GenerateTextOptions): GenerateTextResult {
  const loaded = loadModel(options.modelDir, {
    backend: options.backend,
    dtype: options.dtype,
    onProgress: options.onLoadProgress,
    randomWeights: options.randomWeights,
  });
  const { model, tokenizer } = loaded;
  const promptIds = options.chat
    ? tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content: options.prompt }]), { addSpecialTokens: false })
    : tokenizer.encode(options.prompt);
  if (promptIds.length === 0) throw new CommvqError('the prompt is empty: nothing to continue');
  const capacity = Math.min(model.config.maxPositionEmbeddings, promptIds.length + options.maxNewTokens);
  const choice = options.cache ?? { kind: 'dense' };
  const cache =
    choice.kind === 'dense'
      ? model.createDenseCache(capacity)
      : createCommvqCache(model, loadCommvqCodebooks(model, choice.keyCodebook, choice.valueCodebook), { capacity, prefill: choice.prefill, window: choice.window, sinks: choice.sinks, valueEncoding: choice.valueEncoding });
  try {
    const result = generateGreedy(model, promptIds, {
      maxNewTokens: options.maxNewTokens,
      eosTokenIds: options.ignoreEos ? [] : loaded.eosTokenIds,
      onToken: options.onToken,
      cache,
      prefillChunk: options.prefillChunk,
    });
    return { ...result, promptIds, text: tokenizer.decode(result.outputIds), cacheBytes: cache.bytes() };
  } finally {
    cache.dispose();
  }
}
