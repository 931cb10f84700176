import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * The rows of one forward that belong to one sequence of the cache: rows [row, row + tokens) of every activation are
 * that sequence's tokens at absolute positions start .. start + tokens − 1.
 */
export interface StepGroup {
  readonly sequence: number;
  readonly row: number;
  readonly tokens: number;
  readonly start: number;
}

/**
 * The per-forward inputs that live on the device, so that ops read them at run time and a captured graph can be
 * replayed with new values: token ids, their absolute positions, and the attention lengths.
 *
 * A step is either several tokens of one sequence (a prompt, or one decode token of a single sequence) or one
 * decode token for each sequence of a batch (row b = sequence b, each at its own position):
 *
 *   const step = StepInputs.create(backend, Int32Array.of(id), position);   // one decode step of sequence 0
 *   step.update(Int32Array.of(nextId), position + 1);                        // the next one, same tensors
 *   const batch = StepInputs.decode(backend, ids, [812, 4096, 17]);         // 3 sequences, one token each
 */
export class StepInputs {
  private constructor(
    private readonly backend: Backend,
    /** i32 [T]: the token ids */
    readonly ids: Tensor,
    /** i32 [T]: absolute position of each token (within its own sequence) */
    readonly positions: Tensor,
    /** i32 [2]: {qStart, kvLength} = {start, start + T} for attention kernels that read lengths at run time (one sequence) */
    readonly lengths: Tensor,
    private host: { ids: Int32Array; groups: StepGroup[]; prompt?: boolean },
    /** set for graph replays: the most tokens the cache will hold, bounding the device-side lengths */
    readonly maxKvLength?: number,
  ) {}

  /** `ids.length` tokens of sequence `sequence`, the first at absolute position `start`. */
  static create(backend: Backend, ids: Int32Array, start: number, maxKvLength?: number, sequence = 0): StepInputs {
    const T = ids.length;
    return new StepInputs(
      backend,
      backend.fromArray(ids, [T], 'i32'),
      backend.fromArray(positionsOf(T, start), [T], 'i32'),
      backend.fromArray([start, start + T], [2], 'i32'),
      { ids, groups: [{ sequence, row: 0, tokens: T, start }] },
      maxKvLength,
    );
  }

  /** One decode token per sequence: row b is sequence b's token at position `starts[b]`. */
  static decode(backend: Backend, ids: Int32Array, starts: readonly number[]): StepInputs {
    const B = ids.length;
    if (starts.length !== B) throw new Error(`StepInputs.decode: ${B} ids for ${starts.length} sequences`);
    return new StepInputs(
      backend,
      backend.fromArray(ids, [B], 'i32'),
      backend.fromArray(starts, [B], 'i32'),
      backend.fromArray([starts[0] ?? 0, (starts[0] ?? 0) + 1], [2], 'i32'), // row 0's lengths: a batch reads its own per sequence
      { ids, groups: starts.map((start, b) => ({ sequence: b, row: b, tokens: 1, start })) },
    );
  }

  /**
   * Rows [start, start + T) of a prompt that a layer-major prefill (LlamaModel.prefill) runs in chunks: a prompt step
   * even when it holds one token (a cache that attends exactly over a prompt must not take it for a decode step).
   */
  static prompt(backend: Backend, ids: Int32Array, start: number, sequence = 0): StepInputs {
    const step = StepInputs.create(backend, ids, start, undefined, sequence);
    step.host.prompt = true;
    return step;
  }

  /** Whether the step's rows are (part of) a prompt: several tokens of one sequence, or a prompt chunk of one. */
  get isPrompt(): boolean {
    return this.host.prompt ?? (this.host.groups.length === 1 && this.host.ids.length > 1);
  }

  /** The sequences this step feeds, in row order. */
  get groups(): readonly StepGroup[] {
    return this.host.groups;
  }

  /** Whether every row is its own sequence's token (a batched decode step) rather than the rows of one sequence. */
  get batched(): boolean {
    return this.host.groups.length > 1;
  }

  /** Absolute position of the first token (single-sequence steps). */
  get start(): number {
    return this.single().start;
  }

  /** The sequence of a single-sequence step. */
  get sequence(): number {
    return this.single().sequence;
  }

  /** Number of rows T. */
  get tokens(): number {
    return this.host.ids.length;
  }

  /** The host copy of the ids (for checks). */
  get hostIds(): Int32Array {
    return this.host.ids;
  }

  /** New values for the same tensors (same T, one sequence), enqueued before whatever runs next. */
  update(ids: Int32Array, start: number): void {
    if (ids.length !== this.tokens) throw new Error(`StepInputs.update: ${ids.length} ids for a step of ${this.tokens}`);
    const { sequence } = this.single();
    this.backend.upload(this.ids, ids);
    this.backend.upload(this.positions, positionsOf(ids.length, start));
    this.backend.upload(this.lengths, [start, start + ids.length]);
    this.host = { ids, groups: [{ sequence, row: 0, tokens: ids.length, start }] };
  }

  dispose(): void {
    this.ids.dispose();
    this.positions.dispose();
    this.lengths.dispose();
  }

  private single(): StepGroup {
    if (this.host.groups.length !== 1) throw new Error('this step holds several sequences: read its groups');
    return this.host.groups[0]!;
  }
}

function positionsOf(T: number, start: number): Int32Array {
  return Int32Array.from({ length: T }, (_, i) => start + i);
}
