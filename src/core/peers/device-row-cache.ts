/**
 * The int4/int2 and fp8 caches on the GPU, behind KVCache: the twin of RowQuantCache (row-quant-cache.ts, the CPU
 * reference) with the same flush rule (flush-rule.ts, HF QuantizedCache's), the same codes and scales
 * (kernels/peer_quantize.cu encodes each token as int-rows.ts and fp8-rows.ts do), and the same attention: a step sees
 * the codes held before it, then the exact tokens and its own, exact even where its flush quantizes them.
 *
 * Per layer and sequence, preallocated for `capacity` tokens: keys and values in a part of kernels/peer_formats.cuh
 * (token layout for intN: codes u8 [cap, W·bits/8], f16 scales and zeros [cap, W/group]; fp8: e4m3 codes [cap, W], f32
 * scales [cap, H_kv]), and the exact tokens exactK, exactV bf16 [max(R, 1), W] (R − 1 held, plus a decode step's own
 * until its flush). W = H_kv·D_h.
 *
 * A decode step (one token per sequence) appends its token to the exact rows and attends with
 * peerDecodeAttention, dequantizing inside the kernel; a flush it triggers runs after that attention. A prompt chunk
 * (or any step of several tokens) is quantized at once, and attends with the dense kernels over the codes before it
 * dequantized into a scratch (none for a first chunk: its own rows are all it sees).
 *
 *   const cache = new DeviceRowQuantCache(cuda, shape, 4096, 1, { kind: 'int4', group: 64 }, 128);
 */
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { emptyTensor, rowView } from '../backend/cuda/cuda-tensor.js';
import { downloadFrom } from '../backend/cuda/ops/copies.js';
import { launchPeerDequantize, launchPeerQuantize, peerDecodeAttention, type PeerFormat, type PeerKernelKind } from '../backend/cuda/ops/peer-cache.js';
import { checkStepGroups, type CacheShape, type KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepGroup, StepInputs } from '../model/step-inputs.js';
import { toFloat32Array } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { allocPeerPart, copyRows, type OwnedPeerPart } from './device-parts.js';
import { DevicePeerCache } from './device-peer-cache.js';
import { exactAfterStep } from './flush-rule.js';

/** The number format of a row cache: intN in groups of `group` channels, or fp8. */
export type DeviceRowSpec = { kind: 'int4' | 'int2'; group: number } | { kind: 'fp8' };

interface SequenceState {
  keys: OwnedPeerPart;
  values: OwnedPeerPart;
  exactK: Tensor; // bf16 [max(R, 1), W]
  exactV: Tensor; // bf16 [max(R, 1), W]
  quantized: number; // tokens in codes
  exact: number; // tokens in exactK/exactV
  flushPending: boolean; // a decode step's flush, run after its attention
}

/** What the last step of a sequence attends over besides codes [0, from). */
type Pending =
  | { mode: 'decode' }
  | { mode: 'rows'; from: number; held: number; k: Tensor; v: Tensor; inExact: boolean };

export class DeviceRowQuantCache extends DevicePeerCache<SequenceState> implements KVCache {
  private readonly pending: Map<number, Pending>[]; // [layer]: sequence → its last step
  private readonly format: PeerFormat;
  readonly name: string;

  constructor(
    backend: CudaBackend,
    shape: CacheShape,
    capacity: number,
    batch: number,
    readonly spec: DeviceRowSpec,
    /** HF's residual_length (flush-rule.ts); 0 keeps nothing exact */
    readonly residual: number,
  ) {
    super(backend, shape, capacity, batch);
    this.pending = Array.from({ length: shape.numLayers }, () => new Map());
    this.format = spec.kind === 'fp8' ? { layout: 'fp8', bits: 8, group: shape.headDim } : { layout: 'token', bits: spec.kind === 'int4' ? 4 : 2, group: spec.group };
    this.name = spec.kind === 'fp8' ? 'fp8' : `${spec.kind}-g${spec.group}`;
    const exactRows = Math.max(residual, 1);
    const part = () => allocPeerPart(backend.ctx, this.format, capacity, this.heads);
    this.allocate((s) => ({
      keys: s.keep(part()), values: s.keep(part()),
      exactK: s.keep(backend.zeros([exactRows, this.width], 'bf16')), exactV: s.keep(backend.zeros([exactRows, this.width], 'bf16')),
      quantized: 0, exact: 0, flushPending: false,
    }));
  }

  protected tokensOf(s: SequenceState): number {
    return s.quantized + s.exact;
  }

  /** Tokens of `sequence` in `layer` held as codes and held exact (the flush rule's state, after any pending flush). */
  split(layer: number, sequence = 0): { quantized: number; exact: number } {
    const s = this.state[layer]![sequence]!;
    this.settle(s);
    return { quantized: s.quantized, exact: s.exact };
  }

  append(layer: number, { k, v }: LayerKV, step: StepInputs): void {
    checkStepGroups(this, step, { name: this.name, held: (sq) => this.tokensOf(this.state[layer]![sq]!) });
    const ctx = this.backend.ctx;
    const pending = this.pending[layer]!;
    pending.clear();
    for (const g of step.groups) {
      const s = this.state[layer]![g.sequence]!;
      this.settle(s); // a decode step appended without attend leaves its flush pending
      const [kg, vg] = [rowView(k, g.row, g.tokens), rowView(v, g.row, g.tokens)]; // [T, W] views of the step
      const { quantized: from, exact: held } = s;
      const after = exactAfterStep(held, g.tokens, step.isPrompt || g.start === 0, this.residual); // HF: the first update is the prompt
      if (g.tokens === 1 && !step.isPrompt) {
        // decode: the token joins the exact rows, attention reads them there; its flush (if any) follows attend
        copyRows(ctx, s.exactK, held, kg, 0, 1);
        copyRows(ctx, s.exactV, held, vg, 0, 1);
        s.exact = held + 1;
        s.flushPending = after === 0;
        pending.set(g.sequence, { mode: 'decode' });
      } else if (after === 0) {
        // a flush now: the held exact rows, then the step's, become codes at [from, from + held + T)
        for (const [part, exact, rows] of [[s.keys, s.exactK, kg], [s.values, s.exactV, vg]] as const) {
          launchPeerQuantize(ctx, part, { a: exact, aBase: from, aMod: 0, split: from + held, b: rows }, from, held + g.tokens, this.heads);
        }
        s.quantized = from + held + g.tokens;
        s.exact = 0;
        pending.set(g.sequence, { mode: 'rows', from, held, k: kg, v: vg, inExact: false });
      } else {
        copyRows(ctx, s.exactK, held, kg, 0, g.tokens);
        copyRows(ctx, s.exactV, held, vg, 0, g.tokens);
        s.exact = after;
        pending.set(g.sequence, { mode: 'rows', from, held, k: kg, v: vg, inExact: true });
      }
    }
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const b = this.backend;
    const out = step.groups.length === 1 && step.groups[0]!.tokens > 1 ? undefined : b.zeros(q.shape, q.dtype); // [T, H_q·D_h]
    for (const g of step.groups) {
      const p = this.pending[layer]!.get(g.sequence);
      if (!p) throw new Error(`attend(${layer}) of sequence ${g.sequence} before its append`);
      const s = this.state[layer]![g.sequence]!;
      if (p.mode === 'decode') {
        const part = (part: OwnedPeerPart, exact: Tensor) => ({ part, quantized: s.quantized, exact, exactBase: s.quantized, exactMod: 0 });
        const n = g.start + 1;
        peerDecodeAttention(b.ctx, this.spec.kind as PeerKernelKind, rowView(q, g.row, 1), rowView(out!, g.row, 1),
          part(s.keys, s.exactK), part(s.values, s.exactV), { ...this.heads, queryHeads: this.shape.queryHeads, n });
        this.settle(s);
        continue;
      }
      if (!out) return this.attendRows(s, p, g, q);
      const o = this.attendRows(s, p, g, rowView(q, g.row, g.tokens)); // a view: nothing to free
      b.writeRows(out, g.row, o);
      o.dispose();
    }
    return out!;
  }

  /**
   * Keys and values [n, W] f32 of `sequence` in `layer` as attention reads them (codes dequantized, exact rows as
   * held), and the device parts themselves, for tests.
   */
  dequantized(layer: number, sequence = 0): { k: Float32Array; v: Float32Array } {
    const s = this.state[layer]![sequence]!;
    this.settle(s);
    const n = s.quantized + s.exact;
    const read = (part: OwnedPeerPart, exact: Tensor) => {
      const x = emptyTensor(this.backend.ctx, [Math.max(n, 1), this.width], 'bf16'); // [n, W]
      launchPeerDequantize(this.backend.ctx, part, s.quantized, x, this.heads);
      copyRows(this.backend.ctx, x, s.quantized, exact, 0, s.exact);
      const host = toFloat32Array(downloadFrom(this.backend.ctx, x, new Uint16Array(x.numel)), 'bf16').subarray(0, n * this.width);
      x.dispose();
      return host;
    };
    return { k: read(s.keys, s.exactK), v: read(s.values, s.exactV) };
  }

  /** The device parts of one layer and sequence (tests compare their bytes with the CPU codec's). */
  parts(layer: number, sequence = 0): { keys: OwnedPeerPart; values: OwnedPeerPart } {
    const s = this.state[layer]![sequence]!;
    this.settle(s);
    return { keys: s.keys, values: s.values };
  }

  /** Rewinds sequence 0 to `length` tokens (the codes and exact tokens before it stay as they are). */
  seek(length: number): void {
    for (const l of this.state) {
      const s = l[0]!;
      this.settle(s);
      if (length < 0 || length > s.quantized + s.exact) throw new Error(`seek(${length}) outside ${s.quantized + s.exact} tokens: this cache only rewinds`);
      s.quantized = Math.min(s.quantized, length);
      s.exact = length - s.quantized;
    }
  }

  /** Takes `sequence` as a prompt of `length` tokens, all quantized (their rows read as zeros): measure-memory's stand-in. */
  assumeFilled(sequence: number, length: number): void {
    this.checkFill(length);
    for (const l of this.state) Object.assign(l[sequence]!, { quantized: length, exact: 0, flushPending: false });
  }

  /** Codes, scales and zeros of `capacity` tokens, plus the exact rows, per sequence and layer: what is allocated. */
  bytes(): number {
    const exact = 2 * Math.max(this.residual, 1) * this.width * 2; // exactK and exactV, bf16
    return this.state.flat().reduce((n, s) => n + s.keys.bytes + s.values.bytes + exact, 0);
  }

  dispose(): void {
    for (const s of this.state.flat()) [s.keys, s.values, s.exactK, s.exactV].forEach((t) => t.dispose());
    this.state.length = 0;
    this.pending.length = 0;
  }

  /** Runs a decode step's flush: the exact rows [0, exact) become codes at [quantized, quantized + exact). */
  private settle(s: SequenceState): void {
    if (!s.flushPending) return;
    for (const [part, exact] of [[s.keys, s.exactK], [s.values, s.exactV]] as const) {
      launchPeerQuantize(this.backend.ctx, part, { a: exact, aBase: s.quantized, aMod: 0, split: s.quantized + s.exact }, s.quantized, s.exact, this.heads);
    }
    s.quantized += s.exact;
    s.exact = 0;
    s.flushPending = false;
  }

  /** Dense attention of a step's rows over codes [0, from) dequantized, then the exact rows and its own. */
  private attendRows(s: SequenceState, p: Extract<Pending, { mode: 'rows' }>, g: StepGroup, q: Tensor): Tensor {
    const b = this.backend;
    const n = g.start + g.tokens;
    const shape = { queryHeads: this.shape.queryHeads, kvHeads: this.shape.kvHeads, headDim: this.shape.headDim, qStart: g.start, kvLength: n };
    if (p.from === 0 && p.held === 0) return b.attention(q, p.k, p.v, shape); // a first chunk sees only itself
    const gather = (part: OwnedPeerPart, exact: Tensor, rows: Tensor) => {
      const x = emptyTensor(b.ctx, [n, this.width], 'bf16'); // [n, W]
      launchPeerDequantize(b.ctx, part, p.from, x, this.heads);
      copyRows(b.ctx, x, p.from, exact, 0, p.inExact ? p.held + g.tokens : p.held);
      if (!p.inExact) copyRows(b.ctx, x, p.from + p.held, rows, 0, g.tokens);
      return x;
    };
    const [k, v] = [gather(s.keys, s.exactK, p.k), gather(s.values, s.exactV, p.v)];
    try {
      return b.attention(q, k, v, shape);
    } finally {
      k.dispose();
      v.dispose();
    }
  }
}
