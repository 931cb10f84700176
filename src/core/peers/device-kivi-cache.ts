/**
 * The KIVI cache on the GPU, behind KVCache: the twin of KiviCache (kivi-cache.ts, the CPU reference), holding the
 * same split of every sequence (quant/kivi.ts: keys in blocks of R tokens, the last T mod R exact; values all but the
 * last R quantized), the same codes (kernels/peer_quantize.cu, as affine-groups.ts) and the same attention rules:
 * a prompt attends exactly over the whole prompt (its earlier chunks kept exact as scratch until endPrompt), a decode
 * step over the codes and exact tails including its own token, then flushes (keys when the tail reaches R, values
 * when more than R are exact), as jy-yuan/KIVI does.
 *
 * Per layer and sequence (W = H_kv·D_h), preallocated for `capacity` tokens:
 * A prompt keeps its exact rows in a scratch of `capacity` rows per layer and sequence until endPromptLayer (a
 * layer-major prefill: one layer's scratch at a time) or endPrompt (KIVI's prefill attends exactly over the whole
 * prompt, however many chunks it comes in; fed token-major, every layer's scratch stays until endPrompt).
 *   keys    channel layout: codes u8 [cap, W·bits/8], f16 scales and zeros [cap/G, W]; keyTail bf16 [R, W], position p
 *           at slot p − QK
 *   values  token layout: codes u8 [cap, W·bits/8], f16 scales and zeros [cap, W/G]; ring bf16 [R + 1, W], position p
 *           at slot p mod (R + 1) (values flush one token at a time, so the exact ones rotate)
 * A decode step attends with peerDecodeAttention (dequantization inside the kernel: no bf16 copy of the cache).
 *
 *   const cache = new DeviceKiviCache(cuda, shape, 4096, 1, { bits: 2, group: 32, residual: 128 });
 *   model.prefill(ids, cache); cache.endPrompt();
 */
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { emptyTensor, rowView } from '../backend/cuda/cuda-tensor.js';
import { downloadFrom } from '../backend/cuda/ops/copies.js';
import { launchPeerDequantize, launchPeerQuantize, peerDecodeAttention } from '../backend/cuda/ops/peer-cache.js';
import { CommvqError } from '../errors.js';
import { checkStepGroups, type CacheShape, type KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepInputs } from '../model/step-inputs.js';
import { checkKiviCacheShape } from '../quant/kivi.js';
import { toFloat32Array } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { allocPeerPart, copyIntoRing, copyRows, type OwnedPeerPart } from './device-parts.js';
import { DevicePeerCache } from './device-peer-cache.js';
import type { KiviOptions } from './kivi-rows.js';

interface SequenceState {
  keys: OwnedPeerPart;
  values: OwnedPeerPart;
  keyTail: Tensor; // bf16 [R, W]
  ring: Tensor; // bf16 [R + 1, W]
  tokens: number; // T
  keysQuantized: number; // QK: a multiple of R
  valuesQuantized: number; // QV
  settlePending: boolean; // a decode step's flush, run after its attention
}

/** The exact rows [n, W] a prompt attends over: its chunks so far (and what was held before it). */
interface PromptScratch {
  k: Tensor;
  v: Tensor;
}

export class DeviceKiviCache extends DevicePeerCache<SequenceState> implements KVCache {
  private readonly prompt: (PromptScratch | undefined)[][]; // [layer][sequence]

  constructor(
    backend: CudaBackend,
    shape: CacheShape,
    capacity: number,
    batch: number,
    readonly o: KiviOptions,
  ) {
    super(backend, shape, capacity, batch);
    checkKiviCacheShape(o.group, o.residual, shape.headDim);
    this.prompt = Array.from({ length: shape.numLayers }, () => new Array<PromptScratch | undefined>(batch).fill(undefined));
    const { bits, group, residual: R } = o;
    this.allocate((s) => ({
      keys: s.keep(allocPeerPart(backend.ctx, { layout: 'channel', bits, group }, capacity, this.heads)),
      values: s.keep(allocPeerPart(backend.ctx, { layout: 'token', bits, group }, capacity, this.heads)),
      keyTail: s.keep(backend.zeros([R, this.width], 'bf16')),
      ring: s.keep(backend.zeros([R + 1, this.width], 'bf16')),
      tokens: 0, keysQuantized: 0, valuesQuantized: 0, settlePending: false,
    }));
  }

  protected tokensOf(s: SequenceState): number {
    return s.tokens;
  }

  /** How many keys and values of `sequence` in `layer` are quantized and how many exact (after any pending flush). */
  split(layer: number, sequence = 0): { keys: { quantized: number; exact: number }; values: { quantized: number; exact: number } } {
    const s = this.state[layer]![sequence]!;
    this.settle(s);
    return {
      keys: { quantized: s.keysQuantized, exact: s.tokens - s.keysQuantized },
      values: { quantized: s.valuesQuantized, exact: s.tokens - s.valuesQuantized },
    };
  }

  append(layer: number, kv: LayerKV, step: StepInputs): void {
    checkStepGroups(this, step, { name: 'KIVI', held: (sq) => this.state[layer]![sq]!.tokens });
    const ctx = this.backend.ctx;
    for (const g of step.groups) {
      const s = this.state[layer]![g.sequence]!;
      this.settle(s); // a step appended without attend leaves its flush pending
      const [kg, vg] = [rowView(kv.k, g.row, g.tokens), rowView(kv.v, g.row, g.tokens)]; // [T, W], after RoPE
      if (step.isPrompt) {
        this.growScratch(layer, g.sequence, kg, vg);
        this.store(s, kg, vg);
        continue;
      }
      if (g.tokens !== 1) throw new CommvqError(`the KIVI cache decodes one token per sequence at a time, not ${g.tokens}`, 'feed several tokens as a prompt step');
      this.disposeScratch(layer, g.sequence); // decoding: the prompt's scratch is done
      copyRows(ctx, s.keyTail, s.tokens - s.keysQuantized, kg, 0, 1);
      copyIntoRing(ctx, s.ring, this.o.residual + 1, s.tokens, vg, 0, 1);
      s.tokens += 1;
      s.settlePending = true;
    }
  }

  /** Prompt steps attend exactly over the prompt; decode steps over codes and tails in one fused kernel, then flush. */
  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const b = this.backend;
    const out = b.zeros(q.shape, q.dtype); // [T, H_q·D_h]
    const R = this.o.residual;
    for (const g of step.groups) {
      const s = this.state[layer]![g.sequence]!;
      if (step.isPrompt) {
        const scratch = this.prompt[layer]![g.sequence];
        if (!scratch) throw new Error(`attend(${layer}) of a prompt step before its append`);
        const qr = step.groups.length === 1 ? q : b.sliceRows(q, g.row, g.row + g.tokens);
        const shape = { ...this.heads, queryHeads: this.shape.queryHeads, qStart: g.start, kvLength: g.start + g.tokens };
        const o = b.attention(qr, scratch.k, scratch.v, shape);
        b.writeRows(out, g.row, o);
        if (qr !== q) qr.dispose();
        o.dispose();
        continue;
      }
      const keys = { part: s.keys, quantized: s.keysQuantized, exact: s.keyTail, exactBase: s.keysQuantized, exactMod: 0 };
      const values = { part: s.values, quantized: s.valuesQuantized, exact: s.ring, exactBase: 0, exactMod: R + 1 };
      peerDecodeAttention(b.ctx, this.o.bits === 2 ? 'kivi2' : 'kivi1', rowView(q, g.row, 1), rowView(out, g.row, 1), keys, values,
        { ...this.heads, queryHeads: this.shape.queryHeads, n: s.tokens });
      this.settle(s); // as the reference: flush after the step's attention
    }
    return out;
  }

  seek(length: number): void {
    if (length !== this.length) throw new CommvqError('the KIVI cache cannot rewind or skip tokens (keys are quantized in blocks of residual)');
  }

  /** Takes `sequence` as holding `length` tokens split as KIVI splits them (their rows read as zeros): measure-memory's stand-in. */
  assumeFilled(sequence: number, length: number): void {
    this.checkFill(length);
    const R = this.o.residual;
    for (const l of this.state) {
      Object.assign(l[sequence]!, { tokens: length, keysQuantized: length - (length % R), valuesQuantized: Math.max(0, length - R), settlePending: false });
    }
  }

  /** Everything allocated: codes, f16 scales and zeros for `capacity` tokens, the key tail and value ring (bf16). */
  bytes(): number {
    const tails = (2 * this.o.residual + 1) * this.width * 2;
    return this.state.flat().reduce((n, s) => n + s.keys.bytes + s.values.bytes + tails, 0);
  }

  /** The layer-major prefill is done with `layer`: its scratch goes (a dense layer's worth at 128K). */
  endPromptLayer(layer: number, sequence: number): void {
    this.disposeScratch(layer, sequence);
  }

  endPrompt(): void {
    for (let l = 0; l < this.prompt.length; l++) for (let s = 0; s < this.batch; s++) this.disposeScratch(l, s);
  }

  /** Keys and values [T, W] f32 of one layer and sequence as the next decode step reads them (bf16-rounded codes). */
  dequantized(layer: number, sequence = 0): { keys: Float32Array; values: Float32Array } {
    const s = this.state[layer]![sequence]!;
    const { k, v } = this.materialize(s, s.tokens);
    const read = (x: Tensor) => toFloat32Array(downloadFrom(this.backend.ctx, x, new Uint16Array(x.shape[0]! * this.width)), 'bf16').subarray(0, s.tokens * this.width);
    const out = { keys: read(k), values: read(v) };
    k.dispose();
    v.dispose();
    return out;
  }

  dispose(): void {
    for (const s of this.state.flat()) [s.keys, s.values, s.keyTail, s.ring].forEach((t) => t.dispose());
    this.prompt.flat().forEach((p) => p && [p.k, p.v].forEach((t) => t.dispose()));
    this.state.length = 0;
    this.prompt.length = 0;
  }

  /**
   * Appends rows kg, vg [T, W] at positions [T0, T0 + T) and flushes to KIVI's split of T0 + T at once, reading the
   * tails for positions before T0 and the step's rows after: keys in whole blocks of R, values all but the last R.
   */
  private store(s: SequenceState, kg: Tensor, vg: Tensor): void {
    const ctx = this.backend.ctx;
    const R = this.o.residual;
    const T0 = s.tokens;
    const T1 = T0 + kg.shape[0]!;
    const QK = T1 - (T1 % R);
    if (QK > s.keysQuantized) {
      launchPeerQuantize(ctx, s.keys, { a: s.keyTail, aBase: s.keysQuantized, aMod: 0, split: T0, b: kg }, s.keysQuantized, QK - s.keysQuantized, this.heads);
      copyRows(ctx, s.keyTail, 0, kg, QK - T0, T1 - QK); // a flush leaves only step rows exact (QK > T0)
    } else {
      copyRows(ctx, s.keyTail, T0 - s.keysQuantized, kg, 0, T1 - T0);
    }
    const QV = Math.max(0, T1 - R);
    if (QV > s.valuesQuantized) {
      launchPeerQuantize(ctx, s.values, { a: s.ring, aBase: 0, aMod: R + 1, split: T0, b: vg }, s.valuesQuantized, QV - s.valuesQuantized, this.heads);
    }
    const first = Math.max(QV, T0); // the step's rows that stay exact
    copyIntoRing(ctx, s.ring, R + 1, first, vg, first - T0, T1 - first);
    s.tokens = T1;
    s.keysQuantized = Math.max(s.keysQuantized, QK);
    s.valuesQuantized = Math.max(s.valuesQuantized, QV);
  }

  /** A decode step's flush, after its attention: keys when the tail holds R, the oldest value when R + 1 are exact. */
  private settle(s: SequenceState): void {
    if (!s.settlePending) return;
    const ctx = this.backend.ctx;
    const R = this.o.residual;
    if (s.tokens - s.keysQuantized >= R) {
      launchPeerQuantize(ctx, s.keys, { a: s.keyTail, aBase: s.keysQuantized, aMod: 0, split: s.tokens }, s.keysQuantized, R, this.heads);
      s.keysQuantized += R;
    }
    const QV = Math.max(0, s.tokens - R);
    if (QV > s.valuesQuantized) {
      launchPeerQuantize(ctx, s.values, { a: s.ring, aBase: 0, aMod: R + 1, split: s.tokens }, s.valuesQuantized, QV - s.valuesQuantized, this.heads);
      s.valuesQuantized = QV;
    }
    s.settlePending = false;
  }

  /** The first `rows` rows of keys and values as bf16 [max(rows, 1) + extra, W]: codes dequantized, tails copied. */
  private materialize(s: SequenceState, rows: number, extra = 0): PromptScratch {
    this.settle(s);
    const ctx = this.backend.ctx;
    const R = this.o.residual;
    const make = () => emptyTensor(ctx, [Math.max(rows + extra, 1), this.width], 'bf16');
    const k = make();
    const v = make();
    launchPeerDequantize(ctx, s.keys, s.keysQuantized, k, this.heads);
    copyRows(ctx, k, s.keysQuantized, s.keyTail, 0, s.tokens - s.keysQuantized);
    launchPeerDequantize(ctx, s.values, s.valuesQuantized, v, this.heads);
    // the ring's positions [QV, T), unwrapped
    for (let p = s.valuesQuantized; p < s.tokens; ) {
      const slot = p % (R + 1);
      const n = Math.min(s.tokens - p, R + 1 - slot);
      copyRows(ctx, v, p, s.ring, slot, n);
      p += n;
    }
    return { k, v };
  }

  /**
   * The prompt's exact rows grow by kg, vg, in a scratch of `capacity` rows taken at its first chunk (a chunked prompt
   * then copies each row once); a prompt continuing a decoded sequence starts from what the sequence holds.
   */
  private growScratch(layer: number, sequence: number, kg: Tensor, vg: Tensor): void {
    const ctx = this.backend.ctx;
    const s = this.state[layer]![sequence]!;
    const T = kg.shape[0]!;
    const scratch = this.prompt[layer]![sequence] ?? this.materialize(s, s.tokens, this.capacity - s.tokens); // [capacity, W]
    copyRows(ctx, scratch.k, s.tokens, kg, 0, T);
    copyRows(ctx, scratch.v, s.tokens, vg, 0, T);
    this.prompt[layer]![sequence] = scratch;
  }

  private disposeScratch(layer: number, sequence: number): void {
    const p = this.prompt[layer]![sequence];
    if (!p) return;
    p.k.dispose();
    p.v.dispose();
    this.prompt[layer]![sequence] = undefined;
  }
}
