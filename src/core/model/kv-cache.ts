import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { bytesPerElement, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import type { LayerKV } from './llama.js';
import type { StepInputs } from './step-inputs.js';

/** The attention geometry a cache serves. */
export interface CacheShape {
  numLayers: number;
  queryHeads: number; // H_q
  kvHeads: number; // H_kv
  headDim: number; // D_h
}

/** The cache geometry of the model a config describes (a loaded model's `cacheShape`, or a config alone's). */
export function cacheShapeOf(c: ModelConfig): CacheShape {
  return { numLayers: c.numLayers, queryHeads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim };
}

/**
 * What the model needs from a KV cache. The model hands each layer's new post-RoPE keys and values to `append` and
 * asks the cache to `attend`: a compressed cache (CommVQ) answers from its codes, so the model never tests which
 * kind of cache it has. A cache holds `batch` sequences, each with its own length; a step feeds either several
 * tokens of one sequence or one token of every sequence (StepInputs' groups say which rows are whose).
 */
export interface KVCache {
  /** Sequences held. */
  readonly batch: number;
  /** Tokens held by every layer for sequence 0 (the absolute position of its next token). */
  readonly length: number;
  /** Tokens held by every layer for `sequence`. */
  lengthOf(sequence: number): number;
  /**
   * Stores the step's tokens for `layer`: kv.k (after RoPE) and kv.v [T, H_kv·D_h] for a dense cache; a compressed
   * cache encodes kv.kPre (before RoPE) instead.
   */
  append(layer: number, kv: LayerKV, step: StepInputs): void;
  /** Causal attention of the step's queries q [T, H_q·D_h] (already appended) over this layer's cache. */
  attend(layer: number, q: Tensor, step: StepInputs): Tensor;
  /**
   * Sets the number of tokens held by sequence 0: forgets the ones past `length` (rewind), or takes on rows that a
   * replayed graph step wrote (no host code runs during a replay, so the host count is told afterwards).
   */
  seek(length: number): void;
  /** The most tokens it can hold per sequence. */
  readonly capacity: number;
  /** Whether append and attend only enqueue device work, so that a decode step can be recorded as a CUDA graph. */
  readonly replayable: boolean;
  /** Bytes of storage held for keys and values (all sequences). */
  bytes(): number;
  /** The prompt is complete: a cache that keeps prompt-time scratch (the strict CommVQ prefill) frees it now. */
  endPrompt?(): void;
  /**
   * A layer-major prefill (LlamaModel.prefill) is done with `layer` for `sequence`: no more rows of this prompt come to
   * it, so a cache that keeps the prompt exact for its attention (KIVI) frees that layer's scratch now, and a long
   * prompt holds one layer's exact rows at a time instead of every layer's.
   */
  endPromptLayer?(layer: number, sequence: number): void;
  /**
   * Takes `sequence` as holding `length` tokens whose rows were never written: measure-memory's stand-in for running
   * the prompts of a whole batch. Only caches that allocate every row up front offer it (memory and decode time then
   * do not depend on what the rows hold).
   */
  assumeFilled?(sequence: number, length: number): void;
  /** Bytes of what a compressed cache keeps resident besides tokens: codebooks, and apart its encoders. */
  residentBytes?(): { codebooks: number; encoders: number };
  /**
   * GPU milliseconds of a compressed cache's own phases since the last call (key encoding, value encoding), where it
   * was asked to time them (measure-memory splits a prefill's time this way).
   */
  phaseTimes?(): Record<string, number>;
  dispose(): void;
}

/**
 * The exact cache: keys and values in the backend's activation dtype, in buffers preallocated for `capacity` tokens
 * per sequence (fixed addresses, which CUDA graphs need).
 *
 *   const cache = new DenseKVCache(backend, shape, 4096);        // one sequence
 *   const batch = new DenseKVCache(backend, shape, 32768, 8);    // eight
 */
/**
 * The checks every cache makes of a step before storing it, one message per rule: each group names a sequence the
 * cache holds and ends within its capacity; a cache that only appends (`appendOnly`) also refuses a group that does
 * not start where its sequence ends.
 *
 *   checkStepGroups(this, step, { name: 'KIVI', held: (s) => this.rows[layer]![s]!.tokens });
 */
export function checkStepGroups(cache: { batch: number; capacity: number }, step: StepInputs, appendOnly?: { name: string; held: (sequence: number) => number }): void {
  for (const g of step.groups) {
    if (g.sequence >= cache.batch) throw new Error(`sequence ${g.sequence} of a cache of ${cache.batch}`);
    if (g.start + g.tokens > cache.capacity) throw new CommvqError(`KV cache full: ${g.start} + ${g.tokens} tokens exceed its capacity of ${cache.capacity}`);
    const held = appendOnly?.held(g.sequence);
    if (held !== undefined && g.start !== held) throw new CommvqError(`the ${appendOnly!.name} cache appends in order: a step at ${g.start} after ${held} tokens`);
  }
}

export class DenseKVCache implements KVCache {
  private readonly keys: Tensor[][] = []; // [layer][sequence]: [capacity, H_kv·D_h], post-RoPE
  private readonly values: Tensor[][] = []; // [layer][sequence]: [capacity, H_kv·D_h]
  private readonly lengths: number[][]; // [layer][sequence]
  readonly dtype: DType;
  /** a single sequence replays: its step's lengths live on the device */
  readonly replayable: boolean;

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    readonly capacity: number,
    readonly batch = 1,
  ) {
    this.dtype = backend.activationDType;
    this.replayable = batch === 1;
    const width = shape.kvHeads * shape.headDim;
    try {
      for (let l = 0; l < shape.numLayers; l++) {
        this.keys.push([]);
        this.values.push([]);
        for (let s = 0; s < batch; s++) {
          this.keys[l]!.push(backend.zeros([capacity, width], this.dtype));
          this.values[l]!.push(backend.zeros([capacity, width], this.dtype));
        }
      }
    } catch (err) {
      this.dispose(); // out of memory part way: give back what was taken
      throw err;
    }
    this.lengths = Array.from({ length: shape.numLayers }, () => new Array<number>(batch).fill(0));
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.lengths.map((l) => l[sequence]!));
  }

  append(layer: number, { k, v }: LayerKV, step: StepInputs): void {
    checkStepGroups(this, step);
    if (!step.batched) {
      // rows land at the step's device-side positions, so a replayed graph step appends at the current position
      this.backend.scatterRows(this.keys[layer]![step.sequence]!, step.positions, k);
      this.backend.scatterRows(this.values[layer]![step.sequence]!, step.positions, v);
    } else {
      for (const g of step.groups) {
        const rows = (x: Tensor) => this.backend.sliceRows(x, g.row, g.row + 1);
        const [kr, vr] = [rows(k), rows(v)];
        this.backend.writeRows(this.keys[layer]![g.sequence]!, g.start, kr);
        this.backend.writeRows(this.values[layer]![g.sequence]!, g.start, vr);
        kr.dispose();
        vr.dispose();
      }
    }
    for (const g of step.groups) this.lengths[layer]![g.sequence] = g.start + g.tokens;
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const b = this.backend;
    const shapeOf = (qStart: number, tokens: number) => ({
      queryHeads: this.shape.queryHeads,
      kvHeads: this.shape.kvHeads,
      headDim: this.shape.headDim,
      qStart,
      kvLength: qStart + tokens,
      maxKvLength: step.maxKvLength,
    });
    if (!step.batched) {
      // a replayable step reads its lengths on the device; an eager one passes them as numbers
      const lengths = step.maxKvLength === undefined ? undefined : step.lengths;
      const s = step.sequence;
      return b.attention(q, this.keys[layer]![s]!, this.values[layer]![s]!, shapeOf(step.start, step.tokens), lengths);
    }
    // a batch: each sequence's row attends over its own buffers
    const out = b.zeros(q.shape, q.dtype);
    for (const g of step.groups) {
      const qr = b.sliceRows(q, g.row, g.row + g.tokens);
      const o = b.attention(qr, this.keys[layer]![g.sequence]!, this.values[layer]![g.sequence]!, shapeOf(g.start, g.tokens));
      b.writeRows(out, g.row, o);
      qr.dispose();
      o.dispose();
    }
    return out;
  }

  seek(length: number): void {
    if (length < 0 || length > this.capacity) throw new Error(`seek(${length}) outside a cache of ${this.capacity}`);
    for (const l of this.lengths) l[0] = length;
  }

  /**
   * Takes sequence `s` as holding `length` tokens whose rows were never written (they hold zeros): measure-memory's
   * stand-in for running the prompts of a whole batch, since the buffers are preallocated either way.
   */
  assumeFilled(s: number, length: number): void {
    if (length > this.capacity) throw new Error(`assumeFilled(${length}) beyond a capacity of ${this.capacity}`);
    for (const l of this.lengths) l[s] = length;
  }

  bytes(): number {
    const width = this.shape.kvHeads * this.shape.headDim;
    return 2 * this.shape.numLayers * this.batch * this.capacity * width * bytesPerElement(this.dtype);
  }

  dispose(): void {
    [...this.keys.flat(), ...this.values.flat()].forEach((t) => t.dispose());
    this.keys.length = 0;
    this.values.length = 0;
  }
}
