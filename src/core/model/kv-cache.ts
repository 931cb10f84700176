import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { bytesPerElement, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

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
  /** Stores k, v [T, H_kv·D_h] (k after RoPE) for `layer`, after the tokens already held. */
  append(layer: number, k: Tensor, v: Tensor): void;
  /** Causal attention of q [T, H_q·D_h] (the T newest tokens, already appended) over this layer's cache. */
  attend(layer: number, q: Tensor): Tensor;
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

  append(layer: number, k: Tensor, v: Tensor): void {
    const start = this.lengths[layer]!;
    const rows = k.shape[0]!;
    if (start + rows > this.capacity) {
      throw new CommvqError(`KV cache full: ${start} + ${rows} tokens exceed its capacity of ${this.capacity}`);
    }
    this.backend.writeRows(this.keys[layer]!, start, k);
    this.backend.writeRows(this.values[layer]!, start, v);
    this.lengths[layer] = start + rows;
  }

  attend(layer: number, q: Tensor): Tensor {
    const kvLength = this.lengths[layer]!;
    return this.backend.attention(q, this.keys[layer]!, this.values[layer]!, {
      queryHeads: this.shape.queryHeads,
      kvHeads: this.shape.kvHeads,
      headDim: this.shape.headDim,
      qStart: kvLength - q.shape[0]!,
      kvLength,
    });
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
