import type { Backend, RopeTable } from '../backend/backend.js';
import { CommvqError, OptionError } from '../errors.js';
import { bytesPerElement } from '../tensor/dtype.js';
import { scoped, type Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import { cacheShapeOf, DenseKVCache, type CacheShape, type KVCache } from './kv-cache.js';
import { DEVICE_HIDDEN_BYTES, promptHidden } from './prompt-hidden.js';
import { ropeTable } from './rope.js';
import { StepInputs } from './step-inputs.js';
import type { LayerWeights, ModelWeights } from './weights.js';

/** The tensors a layer produces for its KV cache, shown to observers (collect-kv) before they are cached. */
export interface LayerKV {
  kPre: Tensor; // [T, H_kv·D_h], k_proj output, HF layout, before RoPE
  k: Tensor; // [T, H_kv·D_h], after RoPE: what a dense cache stores
  v: Tensor; // [T, H_kv·D_h], v_proj output
}

/** Called once per layer per forward; the tensors are only valid during the call (copy what you keep). */
export type KVObserver = (layer: number, kv: LayerKV, step: StepInputs) => void;

/** A layer's attention, exact, after o_proj: what value-compressor training compares against. */
export interface LayerAttention extends LayerKV {
  q: Tensor; // [T, H_q·D_h], after RoPE
  o: Tensor; // [T, hidden], o_proj(attention(q, k, v))
}

/** Prompts longer than this take the smaller row chunk (prefillRows). */
const LONG_PROMPT = 65536;

/**
 * Prompt rows per chunk of `LlamaModel.prefill`, the default for every caller (generate, eval, measure-memory): 4096
 * rows bound a layer's activations to ≈ 0.5 GiB at Llama-3.1-8B's sizes; a prompt of more than 64K tokens takes
 * 1024-row chunks (≈ 0.12 GiB), as its cache and one layer's prompt scratch already hold much of the card (at 128K
 * and 1 bit the prefill peaks at 17.41 GiB). Shorter chunks cost a long prompt little; a short one would pay their
 * per-chunk overhead (the CommVQ encoders' launches) on a smaller total.
 */
export function prefillRows(tokens: number): number {
  return tokens > LONG_PROMPT ? 1024 : 4096;
}

export interface ForwardOptions {
  /** which rows get logits: every token (scoring, tests) or only the last of each sequence (generation) */
  logits?: 'all' | 'last';
  observe?: KVObserver;
  /** called after each layer's attention; tensors valid during the call only */
  observeAttention?: (layer: number, attention: LayerAttention, step: StepInputs) => void;
}

export interface PrefillOptions extends ForwardOptions {
  /** the cache's sequence the prompt continues (default 0) */
  sequence?: number;
  /** prompt rows per chunk within a layer (default prefillRows(prompt length)) */
  rows?: number;
  /** keep the prompt's hidden states in pinned host memory between layers (default: on a GPU, above DEVICE_HIDDEN_BYTES) */
  hiddenOnHost?: boolean;
  /** called after each layer (progress of a long prompt) */
  onLayer?: (layer: number) => void;
}

/**
 * The Llama decoder (also Mistral and Qwen2, which differ only in biases and configuration):
 *   h = embed(ids); per layer: h += o_proj(attn(rope(q), rope(k), v)) over rms_norm(h);
 *                              h += down(silu(gate(x))·up(x)) with x = rms_norm(h);
 *   logits = lm_head(rms_norm(h)).
 *
 *   const logits = model.forward(ids, cache);   // [T, V] on the model's backend
 */
export class LlamaModel {
  readonly rope: RopeTable;

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
  ) {
    this.rope = ropeTable(config.rope, config.headDim);
  }

  /** The attention geometry caches for this model need. */
  get cacheShape(): CacheShape {
    return cacheShapeOf(this.config);
  }

  /** An exact cache with room for `capacity` tokens in each of `batch` sequences. */
  createDenseCache(capacity: number, batch = 1): DenseKVCache {
    return new DenseKVCache(this.backend, this.cacheShape, capacity, batch);
  }

  /**
   * Runs `ids` (the tokens after those already in `cache` for `sequence`, default 0) and appends their keys and
   * values to it.
   */
  forward(ids: Int32Array, cache: KVCache, options: ForwardOptions & { sequence?: number } = {}): Tensor {
    const sequence = options.sequence ?? 0;
    const step = StepInputs.create(this.backend, ids, cache.lengthOf(sequence), undefined, sequence);
    try {
      return this.forwardStep(step, cache, options);
    } finally {
      step.dispose();
    }
  }

  /**
   * Runs a prompt layer by layer: all of its tokens through layer l, in row chunks of `rows` tokens that bound the
   * activations, before any goes through layer l + 1. A cache then needs the prompt's keys and values of one layer at
   * a time: a CommVQ cache encodes a layer's blocks once and attends over one layer's scratch, where a prompt fed in
   * token chunks (`forward` per chunk) would rebuild every layer's prefix for every chunk. The result is the same as
   * one `forward` of the whole prompt (the same rows through the same ops, in another order). The hidden states of
   * the whole prompt [T, hidden] wait between layers on the device, or in pinned host memory when large
   * (prompt-hidden.ts).
   *
   *   const logits = model.prefill(promptIds, cache, { rows: 4096 });   // [1, V]: the last token's
   */
  prefill(ids: Int32Array, cache: KVCache, options: PrefillOptions = {}): Tensor {
    const b = this.backend;
    const sequence = options.sequence ?? 0;
    const rows = options.rows ?? prefillRows(ids.length);
    if (!(Number.isInteger(rows) && rows >= 1)) throw new OptionError('rows', String(rows), 'must be a whole number of prompt rows ≥ 1');
    const T = ids.length;
    const hiddenSize = this.config.hiddenSize;
    const start = cache.lengthOf(sequence);
    const steps: StepInputs[] = [];
    for (let c0 = 0; c0 < T; c0 += rows) steps.push(StepInputs.prompt(b, ids.subarray(c0, Math.min(T, c0 + rows)), start + c0, sequence));
    const onHost = options.hiddenOnHost ?? (b.device !== 'cpu' && T * hiddenSize * bytesPerElement(b.activationDType) > DEVICE_HIDDEN_BYTES);
    const h = promptHidden(b, T, hiddenSize, onHost); // every layer's input and output in turn
    try {
      steps.forEach((step, c) => {
        const e = this.embed(step);
        h.write(c * rows, e);
        e.dispose();
      });
      this.weights.layers.forEach((layer, l) => {
        steps.forEach((step, c) => {
          const x = h.read(c * rows, step.tokens);
          const out = this.block(l, layer, x, step, cache, options);
          h.write(c * rows, out);
          x.dispose();
          out.dispose();
        });
        cache.endPromptLayer?.(l, sequence);
        options.onLayer?.(l);
      });
      const last = h.read(options.logits === 'all' ? 0 : T - 1, options.logits === 'all' ? T : 1);
      const logits = this.logits(last);
      last.dispose();
      return logits;
    } finally {
      h.dispose();
      steps.forEach((s) => s.dispose());
    }
  }

  /**
   * One decode step for every sequence of `cache` at once: ids[b] is sequence b's next token, run at its own
   * position (sequences may hold different lengths). Returns logits [B, V].
   *
   *   const logits = model.decodeBatch(Int32Array.from(next), cache);
   */
  decodeBatch(ids: Int32Array, cache: KVCache, options: Omit<ForwardOptions, 'logits'> = {}): Tensor {
    if (ids.length !== cache.batch) throw new CommvqError(`decodeBatch: ${ids.length} tokens for a cache of ${cache.batch} sequences`);
    const step = StepInputs.decode(this.backend, ids, Array.from({ length: cache.batch }, (_, b) => cache.lengthOf(b)));
    try {
      return this.forwardStep(step, cache, { ...options, logits: 'all' });
    } finally {
      step.dispose();
    }
  }

  /**
   * The forward pass over inputs already on the device: what a CUDA graph captures for a decode step. Only
   * `step`'s tensors change between replays, so nothing here may depend on the host values beyond T.
   */
  forwardStep(step: StepInputs, cache: KVCache, options: ForwardOptions = {}): Tensor {
    let h = this.embed(step); // [T, hidden]
    try {
      this.weights.layers.forEach((layer, l) => {
        const next = this.block(l, layer, h, step, cache, options);
        h.dispose();
        h = next;
      });
      // a batched step's rows are each the last token of their sequence
      if (options.logits !== 'last' || step.batched) return this.logits(h);
      return scoped((s) => this.logits(s.keep(this.backend.sliceRows(h, step.tokens - 1, step.tokens))));
    } finally {
      h.dispose();
    }
  }

  /** The embeddings of a step's tokens [T, hidden], after checking that every id is in the vocabulary. */
  private embed(step: StepInputs): Tensor {
    const V = this.config.vocabSize;
    const bad = step.hostIds.find((id) => id < 0 || id >= V);
    if (bad !== undefined) throw new CommvqError(`token id ${bad} is outside the vocabulary of ${V}`);
    return this.backend.embedding(this.weights.embedTokens, step.ids);
  }

  /** Logits [T, V] of final hidden states h [T, hidden]. */
  private logits(h: Tensor): Tensor {
    const b = this.backend;
    const normed = b.rmsNorm(h, this.weights.norm, this.config.rmsNormEps);
    const logits = b.linear(normed, this.weights.lmHead);
    normed.dispose();
    return logits;
  }

  /** One decoder block: returns the new residual stream [T, hidden]. */
  private block(l: number, w: LayerWeights, h: Tensor, step: StepInputs, cache: KVCache, options: ForwardOptions): Tensor {
    const b = this.backend;
    const eps = this.config.rmsNormEps;
    return scoped((s) => {
      const x = s.keep(b.rmsNorm(h, w.inputNorm, eps));
      const q = s.keep(b.rope(s.keep(b.linear(x, w.qProj, w.qBias)), step.positions, this.rope)); // [T, H_q·D_h], post-RoPE
      const kPre = s.keep(b.linear(x, w.kProj, w.kBias)); // [T, H_kv·D_h], pre-RoPE
      const k = s.keep(b.rope(kPre, step.positions, this.rope));
      const v = s.keep(b.linear(x, w.vProj, w.vBias));
      options.observe?.(l, { kPre, k, v }, step);
      cache.append(l, { kPre, k, v }, step);
      const attn = s.keep(cache.attend(l, q, step)); // [T, H_q·D_h]
      const o = s.keep(b.linear(attn, w.oProj, w.oBias)); // [T, hidden]
      options.observeAttention?.(l, { kPre, k, v, q, o }, step);
      const h1 = s.keep(b.add(h, o));
      const x1 = s.keep(b.rmsNorm(h1, w.postNorm, eps));
      const gate = s.keep(b.linear(x1, w.gateProj, w.gateBias));
      const up = s.keep(b.linear(x1, w.upProj, w.upBias));
      const mlp = s.keep(b.linear(s.keep(b.swiglu(gate, up)), w.downProj, w.downBias));
      return b.add(h1, mlp);
    });
  }
}
