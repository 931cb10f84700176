import type { Backend } from './backend/backend.js';
import { openCacheFactory, type CacheDescription } from './cache-factory.js';
import { resolveCacheSpec, type CacheSpec } from './cache-spec.js';
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
  /**
   * ignore the checkpoint: weights drawn at random on the backend from config.json (speed and memory at real sizes);
   * a CommVQ cache of bits alone then gets random codebooks (cache.random_codebooks)
   */
  randomWeights?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite); non-finite activations are still refused */
  allowNonFinite?: boolean;
  /** the KV cache (default dense), with its prompt chunk: `{ kind: 'commvq', bits: 1, run: 'runs/a', prefill: 'strict', chunk: 4096 }` */
  cache?: CacheSpec;
  onLoadProgress?: (done: number, total: number) => void;
  onToken?: (id: number, index: number) => void;
}

export interface GenerateTextResult extends GenerateResult {
  promptIds: number[];
  text: string;
  /** the cache it ran with, as eval manifests record it */
  cache: CacheDescription;
  /** bytes the KV cache held at the end */
  cacheBytes: number;
}

/**
 * Loads a model folder, tokenizes the prompt (through the chat template with `chat`), and continues it greedily.
 *
 *   const r = await generateText({ modelDir: 'tiny-llama', prompt: 'The pass key is', backend, maxNewTokens: 8 });
 */
export function generateText(options: GenerateTextOptions): GenerateTextResult {
  // a missing codebook is refused before the weights load; with random weights, commvq of bits alone means random codebooks
  const random = { random: options.randomWeights ?? false };
  const spec = resolveCacheSpec(options.cache ?? { kind: 'dense' }, random);
  const loaded = loadModel(options.modelDir, {
    backend: options.backend,
    dtype: options.dtype,
    onProgress: options.onLoadProgress,
    randomWeights: options.randomWeights,
    allowNonFinite: options.allowNonFinite,
  });
  const { model, tokenizer } = loaded;
  const promptIds = options.chat
    ? tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content: options.prompt }]), { addSpecialTokens: false })
    : tokenizer.encode(options.prompt);
  if (promptIds.length === 0) throw new CommvqError('the prompt is empty: nothing to continue');
  const capacity = Math.min(model.config.maxPositionEmbeddings, promptIds.length + options.maxNewTokens);
  const caches = openCacheFactory(model, spec, random);
  const cache = caches.make(capacity);
  try {
    const result = generateGreedy(model, promptIds, {
      maxNewTokens: options.maxNewTokens,
      eosTokenIds: options.ignoreEos ? [] : loaded.eosTokenIds,
      onToken: options.onToken,
      cache,
      prefillChunk: caches.description.prefill_chunk,
    });
    return { ...result, promptIds, text: tokenizer.decode(result.outputIds), cache: caches.description, cacheBytes: cache.bytes() };
  } finally {
    cache.dispose();
    caches.dispose();
  }
}
