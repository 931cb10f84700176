import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * The per-forward inputs that live on the device, so that ops read them at run time and a captured graph can be
 * replayed with new values: token ids, their absolute positions, and the attention lengths.
 *
 *   const step = StepInputs.create(backend, Int32Array.of(id), position);   // one decode step
 *   step.update(Int32Array.of(nextId), position + 1);                        // the next one, same tensors
 */
export class StepInputs {
  private constructor(
    private readonly backend: Backend,
    /** i32 [T]: the token ids */
    readonly ids: Tensor,
    /** i32 [T]: absolute position of each token (start + i) */
    readonly positions: Tensor,
    /** i32 [2]: {qStart, kvLength} = {start, start + T} for attention kernels that read lengths at run time */
    readonly lengths: Tensor,
    private host: { ids: Int32Array; start: number },
    /** set for graph replays: the most tokens the cache will hold, bounding the device-side lengths */
    readonly maxKvLength?: number,
  ) {}

  static create(backend: Backend, ids: Int32Array, start: number, maxKvLength?: number): StepInputs {
    const T = ids.length;
    return new StepInputs(
      backend,
      backend.fromArray(ids, [T], 'i32'),
      backend.fromArray(positionsOf(T, start), [T], 'i32'),
      backend.fromArray([start, start + T], [2], 'i32'),
      { ids, start },
      maxKvLength,
    );
  }

  /** Absolute position of the first token. */
  get start(): number {
    return this.host.start;
  }

  /** Number of tokens T. */
  get tokens(): number {
    return this.host.ids.length;
  }

  /** The host copy of the ids (for checks). */
  get hostIds(): Int32Array {
    return this.host.ids;
  }

  /** New values for the same tensors (same T), enqueued before whatever runs next. */
  update(ids: Int32Array, start: number): void {
    if (ids.length !== this.tokens) throw new Error(`StepInputs.update: ${ids.length} ids for a step of ${this.tokens}`);
    this.backend.upload(this.ids, ids);
    this.backend.upload(this.positions, positionsOf(ids.length, start));
    this.backend.upload(this.lengths, [start, start + ids.length]);
    this.host = { ids, start };
  }

  dispose(): void {
    this.ids.dispose();
    this.positions.dispose();
    this.lengths.dispose();
  }
}

function positionsOf(T: number, start: number): Int32Array {
  return Int32Array.from({ length: T }, (_, i) => start + i);
}
