/**
 * The KIVI cache (Liu et al., ICML 2024) behind the KVCache interface: keys per channel over groups of G tokens,
 * values per token over groups of G channels, 2 or 1 bits with f16 scale and zero per group, the recent tokens exact
 * as quant/kivi.ts splits them. This is the CPU reference (host arrays, attention by dequantizing into the
 * backend's dense attention): correctness first. Its GPU twin, with the dequantization fused into the decode kernel, is
 * device-kivi-cache.ts; the factory picks one by backend.
 *
 * Decisions, each as the reference (jy-yuan/KIVI models/llama_kivi.py) does it:
 *   - keys are stored after RoPE (kv.k): KIVI's Llama attention applies apply_rotary_pos_emb, then quantizes.
 *   - the prompt's own attention is exact (the reference's prefill attends over full-precision keys and values and
 *     only stores them quantized); the exact prompt rows are scratch until endPrompt, so a prompt run in row chunks
 *     sees its earlier chunks exact too.
 *   - a decode step attends over the quantized prefix plus the exact tails including its own token, then flushes
 *     (kivi-rows.ts `settle`): keys when the tail reaches R, values when it exceeds R.
 *
 *   const cache = new KiviCache(backend, shape, 4096, 1, { bits: 2, group: 32, residual: 128 });
 *   model.prefill(ids, cache); cache.endPrompt();
 */
import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { checkStepGroups, type CacheShape, type KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepGroup, StepInputs } from '../model/step-inputs.js';
import { checkKiviCacheShape } from '../quant/kivi.js';
import { bytesPerElement } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { type KiviOptions, KiviRows } from './kivi-rows.js';

export class KiviCache implements KVCache {
  private readonly rows: KiviRows[][]; // [layer][sequence]
  private readonly prompt: ({ k: Float32Array[]; v: Float32Array[] } | undefined)[][]; // [layer][sequence]: exact prompt rows [n, C] per chunk
  /** host work between steps: never recorded as a graph */
  readonly replayable = false;

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    readonly capacity: number,
    readonly batch: number,
    readonly o: KiviOptions,
  ) {
    checkKiviCacheShape(o.group, o.residual, shape.headDim);
    const width = shape.kvHeads * shape.headDim;
    this.rows = Array.from({ length: shape.numLayers }, () => Array.from({ length: batch }, () => new KiviRows(width, o)));
    this.prompt = Array.from({ length: shape.numLayers }, () => new Array(batch).fill(undefined));
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.rows.map((l) => l[sequence]!.tokens));
  }

  /** Copies the step's keys (after RoPE) and values to the host and appends them to each sequence's exact tail. */
  append(layer: number, kv: LayerKV, step: StepInputs): void {
    checkStepGroups(this, step, { name: 'KIVI', held: (sq) => this.rows[layer]![sq]!.tokens });
    const k = this.backend.toFloat32(kv.k); // [rows, C], after RoPE
    const v = this.backend.toFloat32(kv.v); // [rows, C]
    const C = this.shape.kvHeads * this.shape.headDim;
    for (const g of step.groups) {
      const rows = this.rows[layer]![g.sequence]!;
      rows.settle(); // a step appended without attend leaves its flush pending
      if (step.isPrompt) this.prompt[layer]![g.sequence] ??= heldAsScratch(rows);
      rows.push(k, v, g.tokens, g.row);
      if (!step.isPrompt) {
        this.prompt[layer]![g.sequence] = undefined; // decoding: the prompt's scratch is done
        continue;
      }
      const scratch = this.prompt[layer]![g.sequence]!;
      scratch.k.push(k.slice(g.row * C, (g.row + g.tokens) * C));
      scratch.v.push(v.slice(g.row * C, (g.row + g.tokens) * C));
      rows.settle(); // the prompt attends over its scratch: store it as KIVI's prefill does at once
    }
  }

  /** Prompt steps attend exactly over the prompt; decode steps over the dequantized cache, then flush. */
  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const b = this.backend;
    const out = b.zeros(q.shape, q.dtype); // [T, H_q·D_h]
    for (const g of step.groups) {
      const qr = step.groups.length === 1 ? q : b.sliceRows(q, g.row, g.row + g.tokens);
      const o = step.isPrompt ? this.attendPrompt(layer, qr, g) : this.attendDecode(layer, qr, g);
      b.writeRows(out, g.row, o);
      if (qr !== q) qr.dispose();
      o.dispose();
    }
    return out;
  }

  seek(length: number): void {
    if (length !== this.length) throw new CommvqError('the KIVI cache cannot rewind or skip tokens (keys are quantized in blocks of residual)');
  }

  /** Packed codes, f16 scales and zeros, and the exact tails (activation dtype), all layers and sequences. */
  bytes(): number {
    const exact = bytesPerElement(this.backend.activationDType);
    return this.rows.flat().reduce((n, r) => n + r.bytes(exact), 0);
  }

  /** The layer-major prefill is done with `layer` (as DeviceKiviCache.endPromptLayer). */
  endPromptLayer(layer: number, sequence: number): void {
    this.prompt[layer]![sequence] = undefined;
  }

  endPrompt(): void {
    for (const l of this.prompt) l.fill(undefined);
  }

  /** Keys and values [T, C] of one layer and sequence as the next decode step reads them (tests feed a dense twin). */
  dequantized(layer: number, sequence = 0): { keys: Float32Array; values: Float32Array } {
    return this.rows[layer]![sequence]!.dequantized();
  }

  /** The storage of one layer and sequence (tests read its split). */
  rowsOf(layer: number, sequence = 0): KiviRows {
    return this.rows[layer]![sequence]!;
  }

  dispose(): void {
    this.rows.length = 0; // host arrays: the collector takes them
    this.prompt.length = 0;
  }

  private attendPrompt(layer: number, q: Tensor, g: StepGroup): Tensor {
    const scratch = this.prompt[layer]![g.sequence];
    if (!scratch) throw new Error(`attend(${layer}) of a prompt step before its append`);
    return this.attendOver(q, g, concat(scratch.k), concat(scratch.v));
  }

  private attendDecode(layer: number, q: Tensor, g: StepGroup): Tensor {
    const rows = this.rows[layer]![g.sequence]!;
    const { keys, values } = rows.dequantized();
    const out = this.attendOver(q, g, keys, values);
    rows.settle(); // as the reference: flush after the step's attention
    return out;
  }

  /** Dense attention of q's rows (positions g.start ..) over host keys and values [g.start + g.tokens, C]. */
  private attendOver(q: Tensor, g: StepGroup, keys: Float32Array, values: Float32Array): Tensor {
    const b = this.backend;
    const { queryHeads, kvHeads, headDim } = this.shape;
    const n = g.start + g.tokens;
    const k = b.fromArray(keys, [n, kvHeads * headDim], b.activationDType); // [n, H_kv·D_h]
    const v = b.fromArray(values, [n, kvHeads * headDim], b.activationDType); // [n, H_kv·D_h]
    try {
      return b.attention(q, k, v, { queryHeads, kvHeads, headDim, qStart: g.start, kvLength: n });
    } finally {
      k.dispose();
      v.dispose();
    }
  }
}

/**
 * The scratch a prompt step starts from: empty for a fresh sequence; after decoding (a prompt step continuing a
 * sequence), the tokens held, as the cache holds them.
 */
function heldAsScratch(rows: KiviRows): { k: Float32Array[]; v: Float32Array[] } {
  if (rows.tokens === 0) return { k: [], v: [] };
  const { keys, values } = rows.dequantized();
  return { k: [keys], v: [values] };
}

/** Chunks [n_i, C] stacked into [Σn_i, C]. */
function concat(chunks: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0)); // [Σn_i, C]
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
