import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { bytesPerElement, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import type { LayerKV } from './llama.js';
import type { StepInputs } from './step-inputs.js';

/** The attention geometry a cache serves. */
export interface CacheShape {
  numLayers: number;
  queryHeads: number; // H_q
  kvHeads: number; // H_kv
  headDim: number; // D_h
}

/**
 * What the model needs from a KV cache. The model hands each layer's new post-RoPE keys and values to `append` and
 * asks the cache to `attend`: a compressed cache (CommVQ) answers from its codes, so the model never tests which
 * kind of cache it has.
 */
export interface KVCache {
  /** Tokens held by every layer (the absolute position of the next token). */
  readonly length: number;
  /**
   * Stores the step's tokens for `layer`: kv.k (after RoPE) and kv.v [T, H_kv·D_h] for a dense cache; a compressed
   * cache encodes kv.kPre (before RoPE) instead.
   */
  append(layer: number, kv: LayerKV, step: StepInputs): void;
  /** Causal attention of the step's queries q [T, H_q·D_h] (already appended) over this layer's cache. */
  attend(layer: number, q: Tensor, step: StepInputs): Tensor;
  /**
   * Sets the number of tokens held: forgets the ones past `length` (rewind), or takes on rows that a replayed
   * graph step wrote (no host code runs during a replay, so the host count is told afterwards).
   */
  seek(length: number): void;
  /** The most tokens it can hold. */
  readonly capacity: number;
  /** Whether append and attend only enqueue device work, so that a decode step can be recorded as a CUDA graph. */
  readonly replayable: boolean;
  /** Bytes of storage held for keys and values. */
  bytes(): number;
  dispose(): void;
}

/**
 * The exact cache: keys and values in the backend's activation dtype, in buffers preallocated for `capacity` tokens
 * (fixed addresses, which CUDA graphs need).
 *
 *   const cache = new DenseKVCache(backend, shape, 4096);
 */
export class DenseKVCache implements KVCache {
  private readonly keys: Tensor[] = []; // per layer: [capacity, H_kv·D_h], post-RoPE
  private readonly values: Tensor[] = []; // per layer: [capacity, H_kv·D_h]
  private readonly lengths: number[];
  readonly dtype: DType;
  readonly replayable = true;

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    readonly capacity: number,
  ) {
    this.dtype = backend.activationDType;
    const width = shape.kvHeads * shape.headDim;
    for (let l = 0; l < shape.numLayers; l++) {
      this.keys.push(backend.zeros([capacity, width], this.dtype));
      this.values.push(backend.zeros([capacity, width], this.dtype));
    }
    this.lengths = new Array<number>(shape.numLayers).fill(0);
  }

  get length(): number {
    return Math.min(...this.lengths);
  }

  append(layer: number, { k, v }: LayerKV, step: StepInputs): void {
    const end = step.start + step.tokens;
    if (end > this.capacity) {
      throw new CommvqError(`KV cache full: ${step.start} + ${step.tokens} tokens exceed its capacity of ${this.capacity}`);
    }
    // rows land at the step's device-side positions, so a replayed graph step appends at the current position
    this.backend.scatterRows(this.keys[layer]!, step.positions, k);
    this.backend.scatterRows(this.values[layer]!, step.positions, v);
    this.lengths[layer] = end;
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const shape = {
      queryHeads: this.shape.queryHeads,
      kvHeads: this.shape.kvHeads,
      headDim: this.shape.headDim,
      qStart: step.start,
      kvLength: step.start + step.tokens,
      maxKvLength: step.maxKvLength,
    };
    // a replayable step reads its lengths on the device; an eager one passes them as numbers
    const lengths = step.maxKvLength === undefined ? undefined : step.lengths;
    return this.backend.attention(q, this.keys[layer]!, this.values[layer]!, shape, lengths);
  }

  seek(length: number): void {
    if (length < 0 || length > this.capacity) throw new Error(`seek(${length}) outside a cache of ${this.capacity}`);
    this.lengths.fill(length);
  }

  bytes(): number {
    const width = this.shape.kvHeads * this.shape.headDim;
    return 2 * this.shape.numLayers * this.capacity * width * bytesPerElement(this.dtype);
  }

  dispose(): void {
    [...this.keys, ...this.values].forEach((t) => t.dispose());
    this.keys.length = 0;
    this.values.length = 0;
  }
}
