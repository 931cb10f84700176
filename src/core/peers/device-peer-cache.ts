/**
 * What the peer caches on the GPU (DeviceKiviCache, DeviceRowQuantCache) share: their state of one record per layer
 * and sequence, allocated up front for `capacity` tokens and given back whole if the device runs out part way, and
 * the KVCache length of a batch read from those records. Each subclass says what a record holds and how many tokens
 * it counts (tokensOf); its flush rules and attention stay its own.
 *
 *   class DeviceFooCache extends DevicePeerCache<FooState> implements KVCache {
 *     constructor(backend, shape, capacity, batch) { super(backend, shape, capacity, batch); this.allocate((s) => ({ keys: s.keep(allocPeerPart(…)), … })); }
 *     protected tokensOf(s: FooState): number { return s.tokens; }
 *   }
 */
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import type { PeerHeads } from '../backend/cuda/ops/peer-cache.js';
import type { CacheShape } from '../model/kv-cache.js';
import { allOrNothing, type TensorScope } from '../tensor/tensor.js';

export abstract class DevicePeerCache<S> {
  protected readonly state: S[][] = []; // [layer][sequence]
  protected readonly heads: PeerHeads;
  protected readonly width: number; // W = H_kv·D_h
  readonly replayable = false; // host code decides flushes between steps

  constructor(
    protected readonly backend: CudaBackend,
    readonly shape: CacheShape,
    readonly capacity: number,
    readonly batch: number,
  ) {
    this.heads = { kvHeads: shape.kvHeads, headDim: shape.headDim };
    this.width = shape.kvHeads * shape.headDim;
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.state.map((l) => this.tokensOf(l[sequence]!)));
  }

  abstract dispose(): void;

  /** The tokens a sequence's record holds in its layer. */
  protected abstract tokensOf(s: S): number;

  /**
   * Fills the state with `record(s)` for every layer and sequence, the record keeping what it makes in `s`; out of
   * memory part way, gives back what was taken, the half-made record's tensors included (allOrNothing).
   */
  protected allocate(record: (s: TensorScope) => S): void {
    try {
      for (let l = 0; l < this.shape.numLayers; l++) {
        this.state.push([]);
        for (let s = 0; s < this.batch; s++) this.state[l]!.push(allOrNothing(record));
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  /** Refuses to take more than `capacity` tokens as held (measure-memory's assumeFilled). */
  protected checkFill(length: number): void {
    if (length > this.capacity) throw new Error(`assumeFilled(${length}) beyond a capacity of ${this.capacity}`);
  }
}
