import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { emptyTensor, rowView, type CudaTensor } from '../backend/cuda/cuda-tensor.js';
import { codeAttentionStep, launchRotationTable } from '../backend/cuda/ops/code-attention.js';
import { keyCodeRowBytes, launchDequantKeys, launchDequantValues, launchPackKeys, launchPackValues } from '../backend/cuda/ops/commvq-cache.js';
import { downloadFrom, zeroFill } from '../backend/cuda/ops/copies.js';
import { CommvqError } from '../errors.js';
import type { CacheShape, KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepGroup, StepInputs } from '../model/step-inputs.js';
import { TensorScope, type Tensor } from '../tensor/tensor.js';
import { CudaTrainOps } from '../values/cuda-train-ops.js';
import { encodeValues, type EncoderParams, type ValueCompressorParams } from '../values/value-compressor.js';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { commvqBytesPerToken } from '../memory/cache-accounting.js';
import { encodeKeysOnDevice } from '../keys/gpu/gpu-encode.js';
import { commvqCacheDefaults, type CommvqCacheOptions, type PrefillMode } from './commvq-cache.js';
import { packedCodeBytes } from './code-packing.js';

/** Reads host (CPU backend) codebook tensors. */
const hostBackend = new CpuBackend();

/** Tokens encoded per call: bounds the encoder's f32 activations (4096 × 4·n_e floats) during a long prefill. */
const ENCODE_CHUNK = 4096;

/** Compressed tokens dequantized per step when a strict prompt rebuilds its prefix (bounds the temporaries). */
const DEQUANT_SEGMENT = 8192;

/** One layer's codebooks on the device: θ f32 (keys), E bf16 and ls f32 (values), the value encoder. */
interface DeviceLayerBooks {
  theta: Tensor; // f32 [R, G, 128, D_h/2]
  codebook: Tensor; // bf16 [N_c, D]: E, the only copy on the device
  scale: Tensor; // f32 [D]: ls
  encoder: EncoderParams; // w1, w2 bf16 (rounded once from the trained f32), the rest f32
}

/** One layer's state for all B sequences, in device memory. */
interface DeviceLayerState {
  // views into the cache's one packed allocation
  keyCodes: CudaTensor; // u8 [B, Ccap, packedCodeBytes(R·G)]
  keyNorms: CudaTensor; // bf16 [B, Ccap]: n_t
  valueBits: CudaTensor; // u8 [B, Ccap, N_c/8]
  valueRho: CudaTensor; // bf16 [B, Ccap]: ρ′_t
  exactKPre: Tensor; // bf16 [B·X, D]: exact tokens before RoPE (encoded when their block is flushed)
  exactK: Tensor; // bf16 [B·X, D]: exact tokens after RoPE (attention)
  exactV: Tensor; // bf16 [B·X, D]
  compressedCount: Tensor; // i32 [B]: N_b
  exactCount: Tensor; // i32 [B]: E_b
}

/** Tokens of one sequence to encode: pre-RoPE keys and values [n, D], bf16. */
interface EncodePart {
  seq: number;
  kPre: Tensor;
  v: Tensor;
}

/** What the cache knows of one sequence of one layer on the host. */
interface SequenceCounts {
  length: number; // tokens held
  compressed: number; // tokens in codes: positions sinks .. sinks + compressed − 1
}

/**
 * The CommVQ cache in device memory (spec §6, §7): the GPU twin of `CommvqCache` (commvq-cache.ts, the host
 * reference it is tested against). Compressed tokens are stored packed (12-bit key codes and a bf16 norm; N_c value
 * bits and a bf16 ρ′), the exact sinks and recent window in bf16; only θ (f32) and E (bf16) of the codebooks are
 * resident, and the value encoders' two matrices are held in bf16 like the model's weights.
 *
 * - Encoding runs on the GPU: keys by the greedy residual encoder (keys/gpu/gpu-encode.ts), values by the trained
 *   encoder (CudaTrainOps), packed by kernels/commvq_pack.cu.
 * - A decode step (one token per sequence) attends on the codes (backend/cuda/ops/code-attention.ts): one launch
 *   sequence for the whole batch, sequences of different lengths.
 * - A prompt: `faithful` attends exactly over the whole prompt (one forward, empty cache), then compresses its
 *   aligned prefix; `strict` follows the decoding rule token by token (a query at p sees the blocks before p's
 *   block compressed) and may come in chunks of any size: each W-block of queries attends over the dequantized
 *   compressed prefix (kernels/commvq_dequant.cu, RoPE reapplied) plus its own block exact, so a 128K prompt in
 *   chunks holds at most one layer's dequantized prefix at a time, never the full bf16 K/V of all layers.
 *
 *   const cache = new DeviceCommvqCache(backend, model.cacheShape, { ...books, rope: model.rope, capacity: 131072, prefill: 'strict' });
 */
export class DeviceCommvqCache implements KVCache {
  readonly capacity: number;
  readonly batch: number;
  /** flushes and encoding run host logic between launches: not recordable as a graph */
  readonly replayable = false;
  private readonly W: number;
  private readonly sinks: number;
  private readonly mode: PrefillMode;
  private readonly X: number; // exact rows per sequence: sinks + W
  private readonly Ccap: number; // compressed rows per sequence (a multiple of 64)
  private readonly ops: CudaTrainOps;
  private readonly books: DeviceLayerBooks[] = [];
  private readonly layers: DeviceLayerState[] = [];
  private readonly counts: SequenceCounts[][]; // [layer][sequence]
  private readonly invFreq: Tensor; // f32 [D_h/2]
  private scratch: { keys: Tensor; values: Tensor } | undefined; // strict prefill: [capacity, D] bf16 each
  private packed: CudaTensor | undefined; // u8: every layer's keyCodes, keyNorms, valueBits, valueRho
  private rotation: CudaTensor | undefined; // f32 [Ccap, D_h/2, 2]: e^{iφ} of every compressed position, shared by all layers
  private readonly R: number;
  private readonly Nc: number;
  private readonly pending = new Map<number, LayerKV>();

  constructor(
    private readonly backend: CudaBackend,
    readonly shape: CacheShape,
    private readonly o: CommvqCacheOptions,
  ) {
    this.capacity = o.capacity;
    ({ window: this.W, sinks: this.sinks, prefill: this.mode, batch: this.batch } = commvqCacheDefaults(o));
    this.X = this.sinks + this.W;
    this.Ccap = Math.ceil(Math.max(0, this.capacity - this.sinks) / 64) * 64;
    this.ops = new CudaTrainOps(backend, { matmul: 'tf32' });
    const first = o.keys.get(0);
    if (!first) throw new CommvqError('key codebook has no layer 0', 'train it with commvq train-key --layers all');
    this.R = first.shape.residuals;
    this.Nc = o.valueShape.codeBits;
    this.invFreq = backend.fromArray(o.rope.invFreq, [o.rope.invFreq.length], 'f32');
    this.counts = Array.from({ length: shape.numLayers }, () => Array.from({ length: this.batch }, () => ({ length: 0, compressed: 0 })));
    try {
      this.rotation = emptyTensor(backend.ctx, [Math.max(this.Ccap, 1), shape.headDim / 2, 2], 'f32');
      launchRotationTable(backend.ctx, { invFreq: this.invFreq, rotation: this.rotation }, this.sinks, Math.max(this.Ccap, 1));
      this.allocate(o);
    } catch (err) {
      this.dispose(); // out of memory part way: give back what was taken
      throw err;
    }
  }

  private allocate(o: CommvqCacheOptions): void {
    const { numLayers, kvHeads, headDim } = this.shape;
    const backend = this.backend;
    const D = kvHeads * headDim;
    const B = this.batch;
    // every layer's packed arrays in one zeroed allocation: per-array blocks would each round up to 2 MiB
    // (≈ 0.1 GiB over 32 layers at 128K)
    const sizes = [B * this.Ccap * packedCodeBytes(this.R * kvHeads), B * this.Ccap * 2, (B * this.Ccap * this.Nc) / 8, B * this.Ccap * 2];
    const aligned = sizes.map((n) => Math.ceil(Math.max(n, 16) / 256) * 256);
    const perLayer = aligned.reduce((a, n) => a + n, 0);
    const packed = emptyTensor(backend.ctx, [numLayers * perLayer], 'u8');
    this.packed = packed;
    zeroFill(backend.ctx, packed);
    const shapes = [[B, this.Ccap, keyCodeRowBytes(this.R * kvHeads)], [B, this.Ccap], [B, this.Ccap, this.Nc / 8], [B, this.Ccap]];
    const dtypes = ['u8', 'bf16', 'u8', 'bf16'] as const;
    for (let l = 0; l < numLayers; l++) {
      const key = o.keys.get(l);
      const value = o.values.get(l);
      if (!key) throw new CommvqError(`key codebook has no layer ${l}`, 'train it with commvq train-key --layers all');
      if (!value) throw new CommvqError(`value codebook has no layer ${l}`, 'train it with commvq train-value');
      if (key.shape.residuals !== this.R) throw new CommvqError(`key codebook: layer ${l} has ${key.shape.residuals} stages, layer 0 has ${this.R}`);
      this.books.push(this.uploadBooks(key.theta, value.params, value.scale));
      let at = l * perLayer;
      const [keyCodes, keyNorms, valueBits, valueRho] = shapes.map((shape, i) => {
        const view = packed.view(at, shape, dtypes[i]);
        at += aligned[i]!;
        return view;
      });
      this.layers.push({
        keyCodes: keyCodes!,
        keyNorms: keyNorms!,
        valueBits: valueBits!,
        valueRho: valueRho!,
        exactKPre: backend.zeros([B * this.X, D], 'bf16'),
        exactK: backend.zeros([B * this.X, D], 'bf16'),
        exactV: backend.zeros([B * this.X, D], 'bf16'),
        compressedCount: backend.zeros([B], 'i32'),
        exactCount: backend.zeros([B], 'i32'),
      });
    }
  }

  get prefillMode(): PrefillMode {
    return this.mode;
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.counts.map((c) => c[sequence]!.length));
  }

  append(layer: number, kv: LayerKV, step: StepInputs): void {
    for (const g of step.groups) {
      if (g.sequence >= this.batch) throw new Error(`sequence ${g.sequence} of a cache of ${this.batch}`);
      if (g.start + g.tokens > this.capacity) throw new CommvqError(`KV cache full: ${g.start} + ${g.tokens} tokens exceed its capacity of ${this.capacity}`);
      const held = this.counts[layer]![g.sequence]!.length;
      if (g.start !== held) throw new CommvqError(`the CommVQ cache appends in order: step at ${g.start}, cache holds ${held}`);
    }
    if (step.batched && step.groups.some((g, i) => g.sequence !== i || g.tokens !== 1)) {
      throw new CommvqError('a batched step must hold one token of every sequence, in order');
    }
    this.pending.set(layer, kv);
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const kv = this.pending.get(layer);
    if (!kv) throw new Error(`attend(${layer}) before append`);
    this.pending.delete(layer);
    if (step.tokens === 1 || step.batched) {
      this.endPrompt(); // decoding: the prompt's scratch is no longer needed
      return this.decode(layer, kv, q, step.groups);
    }
    const g = step.groups[0]!;
    const out = this.mode === 'faithful' ? this.prefillFaithful(layer, g, kv, q) : this.prefillStrict(layer, g, kv, q);
    this.counts[layer]![g.sequence]!.length = g.start + g.tokens;
    return out;
  }

  seek(length: number): void {
    if (length !== this.length) throw new CommvqError('the CommVQ cache cannot rewind or skip tokens (codes are not kept per step)');
  }

  /**
   * Takes sequence `s` as holding `length` tokens whose rows were never written (zero codes and zero exact rows), with
   * the split between codes and the exact window the decoding rule gives: measure-memory's stand-in for running the
   * prompts of a whole batch, since every buffer is preallocated for the capacity.
   */
  assumeFilled(s: number, length: number): void {
    if (length > this.capacity) throw new Error(`assumeFilled(${length}) beyond a capacity of ${this.capacity}`);
    for (const layer of this.counts) layer[s] = { length, compressed: Math.max(0, this.boundary(Math.max(0, length - 1)) - this.sinks) };
  }

  /** Bytes of the device buffers that hold tokens (packed arrays at capacity, exact rows, counts). */
  bytes(): number {
    let total = this.rotation?.byteLength ?? 0;
    for (const s of this.layers) {
      total += s.keyCodes.byteLength + s.keyNorms.byteLength + s.valueBits.byteLength + s.valueRho.byteLength;
      total += 3 * (s.exactK as CudaTensor).byteLength + 2 * 4 * this.batch;
    }
    return total;
  }

  /** Bytes of the resident codebooks: θ (f32) and E (bf16) of every layer; and the value encoders apart. */
  codebookBytes(): { codebooks: number; encoders: number } {
    let codebooks = 0;
    let encoders = 0;
    for (const b of this.books) {
      codebooks += (b.theta as CudaTensor).byteLength + (b.codebook as CudaTensor).byteLength + (b.scale as CudaTensor).byteLength;
      encoders += Object.values(b.encoder).reduce((n, t) => n + (t as CudaTensor).byteLength, 0);
    }
    return { codebooks, encoders };
  }

  /** Bytes per compressed token per layer by the packed arithmetic. */
  get compressedBytesPerToken(): { key: number; value: number } {
    return commvqBytesPerToken(this.shape, { residuals: this.R, codeBits: this.Nc, window: this.W });
  }

  /** The packed state of one layer and sequence, copied to the host (tests compare it with the host reference). */
  download(layer: number, sequence = 0): { compressed: number; keyCodes: Uint8Array; keyNorms: Uint16Array; valueBits: Uint8Array; valueRho: Uint16Array } {
    const n = this.counts[layer]![sequence]!.compressed;
    const st = this.layers[layer]!;
    this.backend.synchronize();
    const read = (name: 'keyCodes' | 'keyNorms' | 'valueBits' | 'valueRho') => {
      const rows = st[name].at(sequence).rows(0, n);
      const out = new Uint8Array(rows.byteLength);
      if (n > 0) downloadFrom(this.backend.ctx, rows, out);
      return out;
    };
    const u16 = (b: Uint8Array) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
    return { compressed: n, keyCodes: read('keyCodes'), keyNorms: u16(read('keyNorms')), valueBits: read('valueBits'), valueRho: u16(read('valueRho')) };
  }

  /**
   * The compressed tokens of a layer dequantized (keys pre-RoPE, values), as the host reference's `dequantized`:
   * k̂_t = n_t·Σ_r C_r[code] (HF layout), v̂_t = (b_t·E)·ρ′_t ⊙ (ls + ε); computed on the device, bf16.
   */
  dequantized(layer: number, sequence = 0): { keys: Float32Array; values: Float32Array; positions: Int32Array } {
    const b = this.backend;
    const n = this.counts[layer]![sequence]!.compressed;
    const D = this.shape.kvHeads * this.shape.headDim;
    const positions = Int32Array.from({ length: n }, (_, t) => this.sinks + t);
    if (n === 0) return { keys: new Float32Array(0), values: new Float32Array(0), positions };
    const s = new TensorScope();
    const keys = s.keep(b.zeros([n, D], 'bf16'));
    const values = s.keep(b.zeros([n, D], 'bf16'));
    this.dequantizeInto(layer, sequence, 0, n, keys, values);
    const out = { keys: b.toFloat32(keys), values: b.toFloat32(values), positions };
    s.dispose();
    return out;
  }

  dispose(): void {
    for (const s of this.layers) {
      [s.exactKPre, s.exactK, s.exactV, s.compressedCount, s.exactCount].forEach((t) => t.dispose());
    }
    for (const b of this.books) [b.theta, b.codebook, b.scale, ...Object.values(b.encoder)].forEach((t) => t.dispose());
    this.invFreq.dispose();
    this.rotation?.dispose();
    this.rotation = undefined;
    this.packed?.dispose();
    this.packed = undefined;
    this.endPrompt();
    this.layers.length = 0;
    this.books.length = 0;
  }

  // ---- decoding ----------------------------------------------------------------------------------------------

  /** One token per group: flush full windows, store the token exact, attend on codes for all groups at once. */
  private decode(layer: number, kv: LayerKV, q: Tensor, groups: readonly StepGroup[]): Tensor {
    const b = this.backend;
    const st = this.layers[layer]!;
    this.flushBefore(layer, groups);
    for (const g of groups) {
      const c = this.counts[layer]![g.sequence]!;
      const slot = g.sequence * this.X + (g.start - c.compressed);
      for (const [dst, src] of [[st.exactKPre, kv.kPre], [st.exactK, kv.k], [st.exactV, kv.v]] as const) {
        const row = b.sliceRows(src, g.row, g.row + 1);
        b.writeRows(dst, slot, row);
        row.dispose();
      }
      c.length = g.start + 1;
    }
    // device lengths of the sequences this step covers (all of them, or one)
    const first = groups[0]!.sequence;
    const seqs = groups.map((g) => this.counts[layer]![g.sequence]!);
    b.upload(st.compressedCount, this.counts[layer]!.map((c) => c.compressed));
    b.upload(st.exactCount, this.counts[layer]!.map((c) => c.length - c.compressed));
    const out = b.zeros([groups.length, this.shape.queryHeads * this.shape.headDim], 'bf16');
    const books = this.books[layer]!;
    codeAttentionStep(b.ctx, {
      q,
      theta: books.theta,
      invFreq: this.invFreq,
      rotation: this.rotation!,
      keyCodes: st.keyCodes,
      keyNorms: st.keyNorms,
      valueBits: st.valueBits,
      valueRho: st.valueRho,
      codebook: books.codebook,
      scale: books.scale,
      exactKeys: st.exactK,
      exactValues: st.exactV,
      compressed: st.compressedCount,
      exact: st.exactCount,
      out,
    }, {
      batch: groups.length,
      queryHeads: this.shape.queryHeads,
      kvHeads: this.shape.kvHeads,
      headDim: this.shape.headDim,
      residuals: this.R,
      codeBits: this.Nc,
      capacity: this.Ccap,
      window: this.X,
      firstPosition: this.sinks,
      maxCompressed: Math.max(...seqs.map((c) => c.compressed)),
    }, { sequence: first }); // the step's sequences are `first` and those after it
    return out;
  }

  /**
   * The decoding rule (§6.6): before each group's token is stored, every full W-block before it is compressed. The
   * window starts at a block boundary, so a flush takes all of its tokens, from slot `sinks` on; the sequences that
   * flush in this step are encoded together.
   */
  private flushBefore(layer: number, groups: readonly StepGroup[]): void {
    const st = this.layers[layer]!;
    const s = new TensorScope();
    const parts: EncodePart[] = [];
    for (const g of groups) {
      const c = this.counts[layer]![g.sequence]!;
      const count = this.boundary(g.start) - (this.sinks + c.compressed);
      if (count <= 0) continue;
      const first = g.sequence * this.X + this.sinks;
      parts.push({ seq: g.sequence, kPre: s.keep(this.backend.sliceRows(st.exactKPre, first, first + count)), v: s.keep(this.backend.sliceRows(st.exactV, first, first + count)) });
    }
    this.encode(layer, parts);
    s.dispose();
  }

  /** Absolute position where the block holding `position` starts (sinks stay exact). */
  private boundary(position: number): number {
    return Math.max(this.sinks, this.sinks + Math.floor((position - this.sinks) / this.W) * this.W);
  }

  // ---- prompts -----------------------------------------------------------------------------------------------

  /** Exact attention over the whole prompt (§6.3), then its aligned prefix compressed and the rest kept exact. */
  private prefillFaithful(layer: number, g: StepGroup, kv: LayerKV, q: Tensor): Tensor {
    if (g.start !== 0) throw new CommvqError('faithful prefill runs the whole prompt in one forward (the cache must be empty)', 'use --prefill strict for chunked prompts');
    const b = this.backend;
    const T = g.tokens;
    const out = b.attention(q, kv.k, kv.v, this.attentionShape(0, T));
    const end = this.boundary(T); // tokens [sinks, end) are compressed
    if (end > this.sinks) {
      const s = new TensorScope();
      this.encode(layer, [{ seq: g.sequence, kPre: s.keep(b.sliceRows(kv.kPre, this.sinks, end)), v: s.keep(b.sliceRows(kv.v, this.sinks, end)) }]);
      s.dispose();
    }
    this.storeExact(layer, g, kv);
    return out;
  }

  /**
   * The decoding rule over a chunk of a prompt: walk its W-blocks in order; when a block's queries attend, every
   * earlier block is compressed and present in the scratch K/V dequantized (RoPE reapplied), the block itself exact.
   * (With sampled value codes the chunk's tokens draw one noise stream, where the host reference draws one per block.)
   */
  private prefillStrict(layer: number, g: StepGroup, kv: LayerKV, q: Tensor): Tensor {
    const b = this.backend;
    const st = this.layers[layer]!;
    const c = this.counts[layer]![g.sequence]!;
    const D = this.shape.kvHeads * this.shape.headDim;
    const end = g.start + g.tokens;
    const s = new TensorScope();
    const { keys, values } = this.prefillScratch(); // [capacity, D] post-RoPE, rows < end used: dequantized or exact
    this.writeDequantized(layer, g.sequence, 0, c.compressed, keys, values);
    // exact tokens held from earlier steps: sinks at their positions, the window after the compressed ones
    const held = g.start - c.compressed; // exact slots in use
    for (const [dst, src] of [[keys, st.exactK], [values, st.exactV]] as const) {
      const copyRows = (slot0: number, slot1: number, position: number) => {
        if (slot1 <= slot0) return;
        const rows = b.sliceRows(src, g.sequence * this.X + slot0, g.sequence * this.X + slot1);
        b.writeRows(dst, position, rows);
        rows.dispose();
      };
      copyRows(0, Math.min(this.sinks, held), 0);
      copyRows(this.sinks, held, this.sinks + c.compressed);
      b.writeRows(dst, g.start, dst === keys ? kv.k : kv.v);
    }
    // every token this chunk compresses ([first, the block of its last token)), encoded in one call and
    // dequantized once; the scratch takes those rows block by block, after the block's own queries have attended
    const first = this.sinks + c.compressed;
    const last = this.boundary(end - 1);
    let fresh: { keys: Tensor; values: Tensor } | undefined;
    if (last > first) {
      const fromWindow = Math.max(0, Math.min(last, g.start) - first);
      const r0 = Math.max(first, g.start) - g.start;
      const r1 = Math.max(r0, last - g.start);
      const rowsOf = (windowRows: Tensor, stepRows: Tensor) => {
        const rows = s.keep(b.zeros([last - first, D], 'bf16'));
        if (fromWindow > 0) b.writeRows(rows, 0, s.keep(b.sliceRows(windowRows, g.sequence * this.X + this.sinks, g.sequence * this.X + this.sinks + fromWindow)));
        if (r1 > r0) b.writeRows(rows, fromWindow, s.keep(b.sliceRows(stepRows, r0, r1)));
        return rows;
      };
      this.encode(layer, [{ seq: g.sequence, kPre: rowsOf(st.exactKPre, kv.kPre), v: rowsOf(st.exactV, kv.v) }]);
      fresh = { keys: s.keep(b.zeros([last - first, D], 'bf16')), values: s.keep(b.zeros([last - first, D], 'bf16')) };
      this.writeDequantized(layer, g.sequence, first - this.sinks, last - this.sinks, fresh.keys, fresh.values, 0);
    }
    const out = b.zeros(q.shape, q.dtype);
    let dequantizedTo = first; // scratch rows below this hold dequantized tokens
    for (let a = g.start; a < end; ) {
      const blockStart = this.boundary(a);
      if (blockStart > dequantizedTo && fresh) {
        for (const [dst, src] of [[keys, fresh.keys], [values, fresh.values]] as const) {
          b.writeRows(dst, dequantizedTo, s.keep(b.sliceRows(src, dequantizedTo - first, blockStart - first)));
        }
        dequantizedTo = blockStart;
      }
      const blockEnd = a < this.sinks ? Math.min(end, this.sinks) : Math.min(end, blockStart + this.W);
      const qRows = s.keep(b.sliceRows(q, a - g.start, blockEnd - g.start));
      const o = s.keep(b.attention(qRows, keys, values, this.attentionShape(a, blockEnd - a)));
      b.writeRows(out, a - g.start, o);
      a = blockEnd;
    }
    this.storeExact(layer, g, kv);
    s.dispose();
    return out;
  }

  /**
   * Rows [row, row + t1 − t0) (default: their positions) ← compressed tokens t0..t1−1 of a sequence, dequantized: keys
   * k̂ = n·Σ_r C_r[code] rotated to their positions, values v̂ = (b·E)·ρ′ ⊙ (ls + ε).
   */
  private writeDequantized(layer: number, seq: number, t0: number, t1: number, keys: Tensor, values: Tensor, row = this.sinks + t0): void {
    const b = this.backend;
    const D = this.shape.kvHeads * this.shape.headDim;
    // in segments, so that a 128K prefix needs no prefix-sized temporaries: values straight into their rows, keys
    // through a pre-RoPE segment that the backend's rope op rotates
    for (let a = t0; a < t1; a += DEQUANT_SEGMENT) {
      const n = Math.min(DEQUANT_SEGMENT, t1 - a);
      const at = row + (a - t0);
      const s = new TensorScope();
      const kPre = s.keep(b.zeros([n, D], 'bf16'));
      this.dequantizeInto(layer, seq, a, a + n, kPre, rowView(values, at, n));
      const positions = s.keep(b.fromArray(Int32Array.from({ length: n }, (_, i) => this.sinks + a + i), [n], 'i32'));
      b.writeRows(keys, at, s.keep(b.rope(kPre, positions, this.o.rope)));
      s.dispose();
    }
  }

  /**
   * Says the prompt is complete: frees the strict prefill's scratch K/V (0.5 GiB at 128K for Llama-3.1-8B) now
   * rather than at the first decode step. Another prompt chunk after it makes the scratch again.
   */
  endPrompt(): void {
    this.scratch?.keys.dispose();
    this.scratch?.values.dispose();
    this.scratch = undefined;
  }

  /** The strict prefill's scratch K/V [capacity, D], made once and kept until decoding starts. */
  private prefillScratch(): { keys: Tensor; values: Tensor } {
    const D = this.shape.kvHeads * this.shape.headDim;
    this.scratch ??= { keys: this.backend.zeros([this.capacity, D], 'bf16'), values: this.backend.zeros([this.capacity, D], 'bf16') };
    return this.scratch;
  }


  /** kPre [t1 − t0, D] ← dequantized pre-RoPE keys, v [t1 − t0, D] ← dequantized values of compressed tokens t0..t1−1 (bf16). */
  private dequantizeInto(layer: number, seq: number, t0: number, t1: number, kPre: Tensor, v: Tensor): void {
    const b = this.backend;
    const books = this.books[layer]!;
    const st = this.layers[layer]!;
    const rows = { sequence: seq, rowStart: t0, tokens: t1 - t0 };
    launchDequantKeys(b.ctx, { keyCodes: st.keyCodes, keyNorms: st.keyNorms, theta: books.theta, out: kPre },
      { ...rows, residuals: this.R, groups: this.shape.kvHeads, headDim: this.shape.headDim });
    launchDequantValues(b.ctx, { valueBits: st.valueBits, valueRho: st.valueRho, codebook: books.codebook, scale: books.scale, out: v }, rows);
  }

  /** After a prompt chunk: its rows that stay exact (sinks, and the tokens past the last compressed one) into the exact arrays. */
  private storeExact(layer: number, g: StepGroup, kv: LayerKV): void {
    const b = this.backend;
    const st = this.layers[layer]!;
    const c = this.counts[layer]![g.sequence]!;
    const end = g.start + g.tokens;
    const put = (p0: number, p1: number, slot: number) => {
      if (p1 <= p0) return;
      for (const [dst, src] of [[st.exactKPre, kv.kPre], [st.exactK, kv.k], [st.exactV, kv.v]] as const) {
        const rows = b.sliceRows(src, p0 - g.start, p1 - g.start);
        b.writeRows(dst, g.sequence * this.X + slot, rows);
        rows.dispose();
      }
    };
    put(g.start, Math.min(end, this.sinks), g.start); // sinks sit at their positions
    const windowStart = Math.max(g.start, this.sinks + c.compressed);
    put(windowStart, end, windowStart - c.compressed);
  }

  // ---- encoding ----------------------------------------------------------------------------------------------

  /**
   * Encodes tokens (pre-RoPE keys and values [n, D], bf16) into the next compressed rows of their sequences: the
   * parts of several sequences are encoded in one pass (a batch flushes its windows together), then packed per part.
   */
  private encode(layer: number, parts: readonly EncodePart[]): void {
    const b = this.backend;
    const total = parts.reduce((n, p) => n + p.kPre.shape[0]!, 0);
    if (total === 0) return;
    for (const p of parts) {
      const c = this.counts[layer]![p.seq]!;
      if (c.compressed + p.kPre.shape[0]! > this.Ccap) throw new CommvqError(`KV cache full: ${c.compressed + p.kPre.shape[0]!} compressed tokens exceed ${this.Ccap}`);
    }
    const s = new TensorScope();
    const gather = (pick: (p: EncodePart) => Tensor) => {
      if (parts.length === 1) return pick(parts[0]!);
      const all = s.keep(b.zeros([total, pick(parts[0]!).shape[1]!], 'bf16'));
      let row = 0;
      for (const p of parts) {
        b.writeRows(all, row, pick(p));
        row += p.kPre.shape[0]!;
      }
      return all;
    };
    const kPre = gather((p) => p.kPre);
    const v = gather((p) => p.v);
    // where each part's tokens sit in the gathered rows
    const offsets: number[] = [];
    parts.reduce((row, p) => (offsets.push(row), row + p.kPre.shape[0]!), 0);
    for (let t0 = 0; t0 < total; t0 += ENCODE_CHUNK) {
      const m = Math.min(ENCODE_CHUNK, total - t0);
      const cs = new TensorScope();
      const keys = total <= ENCODE_CHUNK ? kPre : cs.keep(b.sliceRows(kPre, t0, t0 + m));
      const values = total <= ENCODE_CHUNK ? v : cs.keep(b.sliceRows(v, t0, t0 + m));
      this.encodeChunk(layer, keys, values, m, parts.map((p, i) => ({ seq: p.seq, from: Math.max(0, offsets[i]! - t0), to: Math.min(m, offsets[i]! + p.kPre.shape[0]! - t0) })));
      cs.dispose();
    }
    s.dispose();
  }

  /** Encodes m gathered tokens and packs rows [from, to) of each sequence's share into its next compressed rows. */
  private encodeChunk(layer: number, keys: Tensor, values: Tensor, m: number, shares: { seq: number; from: number; to: number }[]): void {
    const b = this.backend;
    const books = this.books[layer]!;
    const G = this.shape.kvHeads;
    const st = this.layers[layer]!;
    const enc = encodeKeysOnDevice(b.ctx, { theta: books.theta, residuals: this.R, groups: G, headDim: this.shape.headDim }, keys);
    const encoding = this.o.valueEncoding ?? 'argmax';
    const wide = { ...books.encoder, w1: b.cast(books.encoder.w1, 'f32'), w2: b.cast(books.encoder.w2, 'f32') };
    for (const { seq, from, to } of shares) {
      if (to <= from) continue;
      const c = this.counts[layer]![seq]!;
      const rows = { sequence: seq, rowStart: c.compressed, tokens: to - from };
      launchPackKeys(b.ctx, { codes: enc.codes, n2: enc.n2, keyCodes: st.keyCodes, keyNorms: st.keyNorms }, { ...rows, residuals: this.R, groups: G, from });
      // the values: one noise stream per layer and block of tokens of a sequence, as the host reference draws it
      const noise = encoding === 'argmax' ? 'argmax' : { seed: encoding.gumbelSeed, stream: ((layer << 20) ^ c.compressed) >>> 0 };
      const share = to - from === m ? values : b.sliceRows(values, from, to);
      const { bits, rho } = encodeValues(this.ops, wide, share, books.scale, noise);
      if (share !== values) share.dispose();
      launchPackValues(b.ctx, { bits, rho, codebook: books.codebook, valueBits: st.valueBits, valueRho: st.valueRho }, rows);
      bits.dispose();
      rho.dispose();
      c.compressed += to - from;
    }
    wide.w1.dispose();
    wide.w2.dispose();
    enc.dispose();
  }

  /** One layer's codebooks on the device: host (CPU) tensors are copied over, device ones converted; E kept as bf16 only. */
  private uploadBooks(theta: Float32Array, params: ValueCompressorParams, scale: Tensor): DeviceLayerBooks {
    const b = this.backend;
    const toDevice = (t: Tensor, dtype: 'f32' | 'bf16') =>
      t.device === b.device ? b.cast(t, dtype) : b.fromArray(hostBackend.toFloat32(t), t.shape, dtype);
    return {
      theta: b.fromArray(theta, [theta.length], 'f32'),
      codebook: toDevice(params.codebook, 'bf16'),
      scale: toDevice(scale, 'f32'),
      encoder: {
        lnGamma: toDevice(params.lnGamma, 'f32'), lnBeta: toDevice(params.lnBeta, 'f32'),
        // the two large matrices in bf16, like the model's weights (widened to f32 for each encoding call)
        w1: toDevice(params.w1, 'bf16'), b1: toDevice(params.b1, 'f32'), w2: toDevice(params.w2, 'bf16'), b2: toDevice(params.b2, 'f32'),
      },
    };
  }

  private attentionShape(qStart: number, tokens: number) {
    return { queryHeads: this.shape.queryHeads, kvHeads: this.shape.kvHeads, headDim: this.shape.headDim, qStart, kvLength: qStart + tokens };
  }
}
