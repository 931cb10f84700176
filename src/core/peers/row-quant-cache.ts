/**
 * The CPU reference of the peer caches (int4/int2, fp8): keys and values encoded a token at a time by a RowCodec
 * (int-rows.ts, fp8-rows.ts) into byte rows preallocated for `capacity` tokens per sequence, the most recent decode
 * tokens held exact as HF QuantizedCache holds them (flush-rule.ts; none for fp8), dequantized to attend.
 *
 * Keys are stored after RoPE (kv.k), as HF's QuantizedCache and vLLM's fp8 cache quantize them. A step attends as
 * HF's update returns keys_to_return: the codes held before the step, then the exact tokens and the step's own,
 * all exact even where this step's flush quantizes them (so the prompt's own attention is exact, as vLLM's prefill).
 * Host arrays only: on another backend the cache is refused with one line (on CUDA the factory makes the GPU twin,
 * device-row-cache.ts).
 *
 * Per layer and sequence: keys, values: [capacity, rowBytes] bytes; exactK, exactV: [R − 1, H_kv·D_h] f32.
 */
import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { checkStepGroups, type CacheShape, type KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepInputs } from '../model/step-inputs.js';
import { bytesPerElement } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { exactAfterStep } from './flush-rule.js';
import type { RowCodec } from './row-codec.js';

interface SequenceRows {
  keys: Uint8Array; // [capacity, rowBytes]
  values: Uint8Array; // [capacity, rowBytes]
  exactK: Float32Array; // [exactRows, W], the exact tokens after the quantized ones
  exactV: Float32Array; // [exactRows, W]
  quantized: number; // tokens in keys/values
  exact: number; // tokens in exactK/exactV
}

/**
 * A cache of `batch` sequences whose tokens `codec` encodes, keeping up to `residual` − 1 decode tokens exact.
 *
 *   const cache = new RowQuantCache(backend, shape, 4096, 1, intRowCodec(4, 64, shape.kvHeads, shape.headDim), 128);
 *   const fp8 = new RowQuantCache(backend, shape, 4096, 2, fp8RowCodec(shape.kvHeads, shape.headDim), 0);
 */
export class RowQuantCache implements KVCache {
  private readonly rows: SequenceRows[][] = []; // [layer][sequence]
  /** [layer][sequence]: what the last step attends over besides codes [0, from): exact tokens [from, start + T), [·, W] */
  private readonly pending: Map<number, { from: number; k: Float32Array; v: Float32Array }>[] = [];
  private readonly width: number; // W = H_kv·D_h
  private readonly exactRows: number;
  readonly replayable = false; // host code runs at every step

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    readonly capacity: number,
    readonly batch: number,
    readonly codec: RowCodec,
    /** HF's residual_length (flush-rule.ts); 0 keeps nothing exact */
    readonly residual: number,
  ) {
    if (backend.device !== 'cpu') {
      throw new CommvqError(`RowQuantCache (${codec.name}) is the CPU reference and holds host arrays, not ${backend.device} tensors`, 'on a GPU use DeviceRowQuantCache (peerCacheFactory picks it)');
    }
    this.width = shape.kvHeads * shape.headDim;
    this.exactRows = Math.min(Math.max(residual - 1, 0), capacity);
    for (let l = 0; l < shape.numLayers; l++) {
      this.rows.push(
        Array.from({ length: batch }, () => ({
          keys: new Uint8Array(capacity * codec.rowBytes),
          values: new Uint8Array(capacity * codec.rowBytes),
          exactK: new Float32Array(this.exactRows * this.width),
          exactV: new Float32Array(this.exactRows * this.width),
          quantized: 0,
          exact: 0,
        })),
      );
    }
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.rows.map((l) => l[sequence]!.quantized + l[sequence]!.exact));
  }

  /** Tokens of `sequence` in `layer` held as codes and held exact (the flush rule's state). */
  split(layer: number, sequence = 0): { quantized: number; exact: number } {
    const s = this.rows[layer]![sequence]!;
    return { quantized: s.quantized, exact: s.exact };
  }

  append(layer: number, { k, v }: LayerKV, step: StepInputs): void {
    const pending = new Map<number, { from: number; k: Float32Array; v: Float32Array }>();
    this.pending[layer] = pending;
    const kh = this.backend.toFloat32(k); // [T, W]
    const vh = this.backend.toFloat32(v); // [T, W]
    const W = this.width;
    checkStepGroups(this, step, { name: this.codec.name, held: (sq) => this.rows[layer]![sq]!.quantized + this.rows[layer]![sq]!.exact });
    for (const g of step.groups) {
      const s = this.rows[layer]![g.sequence]!;
      const [nk, nv] = [kh.subarray(g.row * W, (g.row + g.tokens) * W), vh.subarray(g.row * W, (g.row + g.tokens) * W)];
      // HF attends over the exact tokens and the step's before a flush quantizes them: keep them for attend
      const seen = (exact: Float32Array, fresh: Float32Array) => {
        const x = new Float32Array((s.exact + g.tokens) * W); // [exact + T, W]
        x.set(exact.subarray(0, s.exact * W));
        x.set(fresh, s.exact * W);
        return x;
      };
      pending.set(g.sequence, { from: s.quantized, k: seen(s.exactK, nk), v: seen(s.exactV, nv) });
      const exact = exactAfterStep(s.exact, g.tokens, step.isPrompt || g.start === 0, this.residual); // HF: the first update is the prompt
      if (exact === 0) {
        // a flush: the held exact tokens, then the step's, become codes
        this.codec.encode(s.exactK, s.exact, s.keys, s.quantized);
        this.codec.encode(nk, g.tokens, s.keys, s.quantized + s.exact);
        this.codec.encode(s.exactV, s.exact, s.values, s.quantized);
        this.codec.encode(nv, g.tokens, s.values, s.quantized + s.exact);
        s.quantized += s.exact + g.tokens;
        s.exact = 0;
      } else {
        if (exact > this.exactRows) throw new Error(`${this.codec.name} cache: ${exact} exact tokens for room of ${this.exactRows}`);
        s.exactK.set(nk, s.exact * W);
        s.exactV.set(nv, s.exact * W);
        s.exact = exact;
      }
    }
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const b = this.backend;
    const W = this.width;
    const pending = this.pending[layer]!;
    const out = step.groups.length === 1 ? undefined : b.zeros(q.shape, q.dtype);
    for (const g of step.groups) {
      const n = g.start + g.tokens;
      // what this step sees, as HF's keys_to_return: the codes held before it, then the exact tokens and its own
      const seen = pending.get(g.sequence)!;
      const s = this.rows[layer]![g.sequence]!;
      const kAll = new Float32Array(n * W); // [start + T, W]
      const vAll = new Float32Array(n * W); // [start + T, W]
      kAll.set(this.codec.decode(s.keys, 0, seen.from));
      vAll.set(this.codec.decode(s.values, 0, seen.from));
      kAll.set(seen.k, seen.from * W);
      vAll.set(seen.v, seen.from * W);
      const kt = b.fromArray(kAll, [n, W], b.activationDType);
      const vt = b.fromArray(vAll, [n, W], b.activationDType);
      const shape = { queryHeads: this.shape.queryHeads, kvHeads: this.shape.kvHeads, headDim: this.shape.headDim, qStart: g.start, kvLength: n };
      const qr = out ? b.sliceRows(q, g.row, g.row + g.tokens) : q;
      const o = b.attention(qr, kt, vt, shape);
      [kt, vt].forEach((t) => t.dispose());
      if (!out) return o;
      b.writeRows(out, g.row, o);
      qr.dispose();
      o.dispose();
    }
    return out!;
  }

  /**
   * The first `tokens` tokens (default: all) of `sequence` in `layer` as attention reads them: codes dequantized, exact
   * tokens as given. k, v: [tokens, H_kv·D_h] f32.
   *
   *   const { k, v } = cache.dequantized(0, 0);   // what a dense twin must hold to attend alike
   */
  dequantized(layer: number, sequence: number, tokens?: number): { k: Float32Array; v: Float32Array } {
    const s = this.rows[layer]![sequence]!;
    const n = tokens ?? s.quantized + s.exact;
    const q = Math.min(n, s.quantized);
    const W = this.width;
    const read = (codes: Uint8Array, exact: Float32Array) => {
      const x = new Float32Array(n * W); // [n, W]
      x.set(this.codec.decode(codes, 0, q));
      x.set(exact.subarray(0, (n - q) * W), q * W);
      return x;
    };
    return { k: read(s.keys, s.exactK), v: read(s.values, s.exactV) };
  }

  /** Rewinds sequence 0 to `length` tokens (the codes and exact tokens before it stay as they are). */
  seek(length: number): void {
    for (const l of this.rows) {
      const s = l[0]!;
      if (length < 0 || length > s.quantized + s.exact) throw new Error(`seek(${length}) outside ${s.quantized + s.exact} tokens: this cache only rewinds`);
      s.quantized = Math.min(s.quantized, length);
      s.exact = length - s.quantized;
    }
  }

  /** Codes and scales of `capacity` tokens, plus the exact part (R − 1 tokens at the activation dtype), per sequence and layer. */
  bytes(): number {
    const exact = 2 * this.exactRows * this.width * bytesPerElement(this.backend.activationDType);
    return this.shape.numLayers * this.batch * (2 * this.capacity * this.codec.rowBytes + exact);
  }

  dispose(): void {
    this.rows.length = 0;
    this.pending.length = 0;
  }
}
