import { CommvqError } from '../errors.js';
import { GraphDecoder } from './graph-decoder.js';
import type { KVCache } from './kv-cache.js';
import type { LlamaModel } from './llama.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** generation stops after emitting one of these (the token is kept in the output, as transformers does) */
  eosTokenIds?: readonly number[];
  /** a cache to fill; by default a dense one sized for the prompt and the new tokens */
  cache?: KVCache;
  /** called with each new token as it is chosen */
  onToken?: (id: number, index: number) => void;
  /** replay a recorded graph for each decode step where the backend can (default true) */
  useGraphs?: boolean;
}

export interface GenerateResult {
  outputIds: number[];
  stopReason: 'eos' | 'max-new-tokens' | 'context';
  /** wall time of the prompt's forward pass and of the decode steps after it */
  prefillMs: number;
  decodeMs: number;
}

/**
 * Greedy decoding: one forward over the prompt, then one token at a time, always the most likely next token.
 *
 *   const { outputIds } = generateGreedy(model, promptIds, { maxNewTokens: 24, eosTokenIds: [128009] });
 */
export function generateGreedy(model: LlamaModel, promptIds: readonly number[], options: GenerateOptions): GenerateResult {
  const context = model.config.maxPositionEmbeddings;
  if (promptIds.length === 0) throw new CommvqError('the prompt is empty: nothing to continue');
  if (promptIds.length > context) {
    throw new CommvqError(`the prompt is ${promptIds.length} tokens, longer than the model's context of ${context} (max_position_embeddings)`);
  }
  const budget = Math.min(options.maxNewTokens, context - promptIds.length);
  const cache = options.cache ?? model.createDenseCache(promptIds.length + budget);
  const eos = new Set(options.eosTokenIds ?? []);
  const outputIds: number[] = [];
  let stopReason: GenerateResult['stopReason'] = budget < options.maxNewTokens ? 'context' : 'max-new-tokens';
  const decoder = options.useGraphs === false ? undefined : GraphDecoder.create(model, cache);
  const t0 = performance.now();
  let prefillMs = 0;
  try {
    let next = -1;
    while (outputIds.length < budget) {
      if (outputIds.length === 0) {
        const logits = model.forward(Int32Array.from(promptIds), cache, { logits: 'last' });
        next = model.backend.argmaxRows(logits)[0]!;
        logits.dispose();
        prefillMs = performance.now() - t0;
      } else if (decoder) {
        next = model.backend.argmaxRows(decoder.next(next))[0]!;
      } else {
        const logits = model.forward(Int32Array.of(next), cache, { logits: 'last' });
        next = model.backend.argmaxRows(logits)[0]!;
        logits.dispose();
      }
      outputIds.push(next);
      options.onToken?.(next, outputIds.length - 1);
      if (eos.has(next)) {
        stopReason = 'eos';
        break;
      }
    }
  } finally {
    decoder?.dispose();
    if (!options.cache) cache.dispose();
  }
  return { outputIds, stopReason, prefillMs, decodeMs: performance.now() - t0 - prefillMs };
}
