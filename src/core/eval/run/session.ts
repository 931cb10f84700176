/**
 * A model opened for evaluation: the loaded model and tokenizer, the cache factory of the chosen cache, and
 * greedy generation of one example with its own fresh cache. The runners ask it for ids and text only.
 *
 *   const s = EvalSession.open({ modelDir: 'tiny-llama', backend, cache: { kind: 'dense' } });
 *   const out = s.generate(promptIds, { maxNewTokens: 32, eosTokenIds: s.loaded.eosTokenIds });
 *   s.dispose();
 *
 * Timing at a real size without a checkpoint or trained codebooks (config.json and the tokenizer only):
 *
 *   EvalSession.open({ modelDir: 'Llama-3.1-8B-Instruct', backend, cache: { kind: 'commvq', bits: 1 }, randomWeights: true });
 */
import type { Backend } from '../../backend/backend.js';
import { CommvqError } from '../../errors.js';
import { generateGreedy, type GenerateResult } from '../../model/generate.js';
import { loadModel, type LoadedModel } from '../../model/load-model.js';
import { disposeWeights } from '../../model/weights.js';
import type { DType } from '../../tensor/dtype.js';
import { openCacheFactory, type CacheFactory } from '../../cache-factory.js';
import { resolveCacheSpec, type CacheSpec } from '../../cache-spec.js';
import { modelIdentity, type ModelIdentity } from './manifest.js';

export interface EvalSessionOptions {
  modelDir: string;
  backend: Backend;
  cache: CacheSpec;
  dtype?: DType;
  /**
   * ignore the checkpoint: seeded random weights from config.json, made on the backend (loadModel's randomWeights);
   * a CommVQ cache of bits alone then gets random codebooks. The run's identity records both.
   */
  randomWeights?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite); non-finite activations are still refused */
  allowNonFinite?: boolean;
  onLoadProgress?: (done: number, total: number) => void;
}

export interface EvalGeneration {
  maxNewTokens: number;
  eosTokenIds: readonly number[];
  /** EOS ids masked until this many new tokens (samsum: 1) */
  minNewTokens?: number;
}

export interface EvalOutput extends GenerateResult {
  /** decoded new tokens, special tokens skipped (`decode(..., skip_special_tokens=True)`) */
  text: string;
  promptTokens: number;
}

/** What a prediction record says of an example's time: wall milliseconds of its prompt and of its decode steps. */
export function outputTimes(out: Pick<GenerateResult, 'prefillMs' | 'decodeMs'>): { prefill_ms: number; decode_ms: number } {
  return { prefill_ms: Math.round(out.prefillMs * 10) / 10, decode_ms: Math.round(out.decodeMs * 10) / 10 };
}

export class EvalSession {
  private constructor(
    readonly loaded: LoadedModel,
    readonly caches: CacheFactory,
    readonly identity: ModelIdentity,
  ) {}

  static open(o: EvalSessionOptions): EvalSession {
    const random = { random: o.randomWeights ?? false };
    const cache = resolveCacheSpec(o.cache, random); // a missing codebook is refused before the weights load
    const loaded = loadModel(o.modelDir, { backend: o.backend, dtype: o.dtype, onProgress: o.onLoadProgress, randomWeights: o.randomWeights, allowNonFinite: o.allowNonFinite });
    try {
      const identity = modelIdentity(o.modelDir, loaded.config, { randomWeights: o.randomWeights });
      return new EvalSession(loaded, openCacheFactory(loaded.model, cache, random), identity);
    } catch (err) {
      disposeWeights(loaded.model.weights);
      throw err;
    }
  }

  /** max_position_embeddings: the longest prompt plus answer the model may see */
  get contextLength(): number {
    return this.loaded.config.maxPositionEmbeddings;
  }

  /** The tokenizer's eos_token id (Llama-3-Instruct: <|eot_id|>), else the model's first EOS id. */
  get tokenizerEosTokenId(): number {
    const id = this.loaded.tokenizer.eosTokenId ?? this.loaded.eosTokenIds[0];
    if (id === undefined) throw new CommvqError(`${this.loaded.dir}: neither tokenizer_config.json nor config.json names an EOS token`);
    return id;
  }

  /** Greedy generation over a fresh cache of the chosen kind; a prompt longer than the context is an error. */
  generate(promptIds: readonly number[], g: EvalGeneration): EvalOutput {
    if (promptIds.length + 1 > this.contextLength) {
      throw new CommvqError(
        `the prompt is ${promptIds.length} tokens, which leaves no room for an answer in the model's context of ${this.contextLength} (max_position_embeddings)`,
      );
    }
    const capacity = Math.min(this.contextLength, promptIds.length + g.maxNewTokens);
    const cache = this.caches.make(capacity);
    try {
      const r = generateGreedy(this.loaded.model, promptIds, {
        maxNewTokens: g.maxNewTokens, eosTokenIds: g.eosTokenIds, minNewTokens: g.minNewTokens, cache,
        prefillChunk: this.caches.description.prefill_chunk,
      });
      return { ...r, text: this.loaded.tokenizer.decode(r.outputIds, { skipSpecialTokens: true }), promptTokens: promptIds.length };
    } finally {
      cache.dispose();
    }
  }

  dispose(): void {
    this.caches.dispose();
    disposeWeights(this.loaded.model.weights);
  }
}
