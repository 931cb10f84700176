import type { Backend, ReplayableGraph } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { KVCache } from './kv-cache.js';
import type { LlamaModel } from './llama.js';
import { StepInputs } from './step-inputs.js';

/**
 * Decodes one token at a time by replaying a recorded graph of the model's forward step: a 32-layer step is
 * hundreds of kernel launches, and one replay costs about as much host time as one launch. The step's inputs
 * (id, position, attention lengths) live in device tensors that are updated before each replay; the cache appends
 * at the device-side position, and attention reads its lengths on the device, bounded by the cache's capacity.
 *
 *   const decoder = GraphDecoder.create(model, cache);          // undefined where the backend cannot record graphs
 *   const logits = decoder.next(tokenId);                        // [1, V], valid until the next call
 */
export class GraphDecoder {
  private recorded?: { graph: ReplayableGraph; logits: Tensor; step: StepInputs };

  private constructor(
    private readonly model: LlamaModel,
    private readonly cache: KVCache,
    private readonly backend: Required<Pick<Backend, 'captureGraph'>>,
  ) {}

  static create(model: LlamaModel, cache: KVCache): GraphDecoder | undefined {
    const backend = model.backend;
    if (!backend.captureGraph || !cache.replayable) return undefined;
    return new GraphDecoder(model, cache, backend as Required<Pick<Backend, 'captureGraph'>>);
  }

  /** Runs token `id` at the cache's current length and returns its logits [1, V] (owned by the decoder). */
  next(id: number): Tensor {
    const start = this.cache.length;
    if (start >= this.cache.capacity) throw new CommvqError(`KV cache full: it holds ${this.cache.capacity} tokens`);
    if (id < 0 || id >= this.model.config.vocabSize) throw new CommvqError(`token id ${id} is outside the vocabulary of ${this.model.config.vocabSize}`);
    const ids = Int32Array.of(id);
    if (!this.recorded) {
      this.recorded = this.record(ids, start);
    } else {
      this.recorded.step.update(ids, start);
    }
    this.recorded.graph.replay();
    this.cache.seek(start + 1); // the replay wrote row `start` of every layer; no host code ran to count it
    return this.recorded.logits;
  }

  dispose(): void {
    if (!this.recorded) return;
    this.recorded.graph.dispose();
    this.recorded.logits.dispose();
    this.recorded.step.dispose();
    this.recorded = undefined;
  }

  private record(ids: Int32Array, start: number): { graph: ReplayableGraph; logits: Tensor; step: StepInputs } {
    const step = StepInputs.create(this.model.backend, ids, start, this.cache.capacity);
    // one eager run first loads every kernel and GEMM plan the step needs, which a recording cannot do
    this.model.forwardStep(step, this.cache, { logits: 'last' }).dispose();
    this.cache.seek(start);
    const { graph, result } = this.backend.captureGraph(() => this.model.forwardStep(step, this.cache, { logits: 'last' }));
    return { graph, logits: result, step };
  }
}
