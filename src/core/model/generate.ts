import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { findNonFinite } from '../tensor/non-finite.js';
import { GraphDecoder } from './graph-decoder.js';
import type { KVCache } from './kv-cache.js';
import type { Tensor } from '../tensor/tensor.js';
import type { LlamaModel } from './llama.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** generation stops after emitting one of these (the token is kept in the output, as transformers does) */
  eosTokenIds?: readonly number[];
  /**
   * `eosTokenIds` cannot be chosen before this many new tokens (transformers' min_length / min_new_tokens: their
   * logits are masked to −∞ on those steps). Default 0.
   */
  minNewTokens?: number;
  /** a cache to fill; by default a dense one sized for the prompt and the new tokens */
  cache?: KVCache;
  /** called with each new token as it is chosen */
  onToken?: (id: number, index: number) => void;
  /** replay a recorded graph for each decode step where the backend can (default true) */
  useGraphs?: boolean;
  /**
   * Feeds the prompt in pieces of this many tokens, one `forward` each (token-major: every layer's keys and values of
   * a piece before the next piece). By default the prompt runs whole, layer by layer (`LlamaModel.prefill`). A
   * faithful CommVQ cache attends exactly over the whole prompt and refuses a second piece.
   */
  prefillChunk?: number;
}

export interface GenerateResult {
  outputIds: number[];
  stopReason: 'eos' | 'max-new-tokens' | 'context';
  /** wall time of the prompt's forward pass and of the decode steps after it */
  prefillMs: number;
  decodeMs: number;
}

/**
 * Greedy decoding: the prompt's forward (in chunks with `prefillChunk`), then one token at a time, always the most
 * likely next token.
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
  const cache: KVCache = options.cache ?? model.createDenseCache(promptIds.length + budget);
  const eos = new Set(options.eosTokenIds ?? []);
  const minNew = options.minNewTokens ?? 0;
  const outputIds: number[] = [];
  // the most likely token, or the most likely non-EOS one while fewer than minNewTokens are out
  const choose = (logits: Tensor) => chooseToken(model.backend, logits, outputIds.length, outputIds.length < minNew && eos.size > 0 ? eos : undefined);
  let stopReason: GenerateResult['stopReason'] = budget < options.maxNewTokens ? 'context' : 'max-new-tokens';
  const decoder = options.useGraphs === false ? undefined : GraphDecoder.create(model, cache);
  const t0 = performance.now();
  let prefillMs = 0;
  try {
    let next = -1;
    while (outputIds.length < budget) {
      if (outputIds.length === 0) {
        const ids = Int32Array.from(promptIds);
        const logits = options.prefillChunk === undefined ? model.prefill(ids, cache, { logits: 'last' }) : prefillInPieces(model, ids, cache, options.prefillChunk);
        cache.endPrompt?.();
        next = choose(logits);
        logits.dispose();
        prefillMs = performance.now() - t0;
      } else if (decoder) {
        next = choose(decoder.next(next));
      } else {
        const logits = model.forward(Int32Array.of(next), cache, { logits: 'last' });
        next = choose(logits);
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

/**
 * The next token from the logits [1, V] of new token `index`, leaving out `banned`; a row with NaN or Inf is refused
 * (a NaN model's argmax is token 0, which would be emitted without a word). The whole row is checked on the host where
 * it is read there anyway (banned ids) and for the prompt's logits (once per generation); on a decode step, only when
 * the argmax is 0, the id the argmax kernels give a row of NaN: a healthy step copies no more than its argmax.
 */
function chooseToken(backend: Backend, logits: Tensor, index: number, banned: ReadonlySet<number> | undefined): number {
  if (!banned && index > 0) {
    const id = backend.argmaxRows(logits)[0]!;
    if (id !== 0) return id;
  }
  const row = backend.toFloat32(logits);
  const { count } = findNonFinite(row, 'f32');
  if (count > 0) {
    throw new CommvqError(
      `the model's logits for new token ${index} have ${count} NaN/Inf among their ${row.length} values: no token can be chosen`,
      'the weights or the cache produce non-finite activations (weights loaded with --allow-nonfinite can)',
    );
  }
  return banned ? argmaxExcept(row, banned) : backend.argmaxRows(logits)[0]!;
}

/**
 * Index of the largest of one row of logits [V] leaving out `banned` (first on ties, NaN skipped, as the argmax
 * kernels do): the host-side choice on the few steps where min_length masks the EOS ids.
 *
 *   argmaxExcept(Float32Array.of(1, 5, 3), new Set([1]))  // 2
 */
export function argmaxExcept(logits: Float32Array, banned: ReadonlySet<number>): number {
  let best = -1;
  for (let i = 0; i < logits.length; i++) {
    if (banned.has(i) || Number.isNaN(logits[i])) continue;
    if (best < 0 || logits[i]! > logits[best]!) best = i;
  }
  return Math.max(best, 0);
}

/** The prompt's forward in pieces of `chunk` tokens, one forward each; the logits of its last token. */
function prefillInPieces(model: LlamaModel, ids: Int32Array, cache: KVCache, chunk: number): Tensor {
  if (!(Number.isInteger(chunk) && chunk >= 1)) throw new CommvqError(`prefill chunk ${chunk}: must be a whole number of tokens ≥ 1`);
  for (let at = 0; ; at += chunk) {
    const end = Math.min(at + chunk, ids.length);
    const logits = model.forward(ids.subarray(at, end), cache, { logits: 'last' });
    if (end === ids.length) return logits;
    logits.dispose();
  }
}
