import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { emptyTensor, rowView, type CudaTensor } from '../backend/cuda/cuda-tensor.js';
import { codeAttentionStep, launchRotationTable } from '../backend/cuda/ops/code-attention.js';
import { launchDequantKeys, launchDequantValues, launchPackKeys, launchPackValues } from '../backend/cuda/ops/commvq-cache.js';
import { launchEncodeValuesArgmax } from '../backend/cuda/ops/value-encode.js';
import { downloadFrom, zeroFill } from '../backend/cuda/ops/copies.js';
import { PhaseTimer } from '../backend/cuda/timing.js';
import { CommvqError } from '../errors.js';
import { DeviceKeyTables, encodeKeysOnDevice, type DeviceKeyLayer, type EncodedKeys } from '../keys/gpu/gpu-encode.js';
import type { LayerKV } from '../model/llama.js';
import { bytesPerElement } from '../tensor/dtype.js';
import { numel } from '../tensor/shape.js';
import { allOrNothing, scoped, type Tensor } from '../tensor/tensor.js';
import { CudaTrainOps } from '../values/cuda-train-ops.js';
import { encodeValues } from '../values/value-compressor.js';
import { packedCodeBytes } from '../tensor/code-packing.js';
import type { StoreSettings } from './commvq-cache.js';
import type { CommvqStore, DecodeToken, EncodePart, PackedTokens, PromptChunk } from './commvq-store.js';
import { booksBytes, disposeBooks, uploadBooks, type DeviceLayerBooks } from './device-books.js';
import { encodeRuns, gatherRows, type EncodeRun } from './device-encode.js';
import { DevicePrompt } from './device-prompt.js';

/** Tokens encoded per pass (a whole number of blocks): bounds the encoder's f32 activations during a long prefill. */
const ENCODE_CHUNK = 4096;

/** One layer's tokens for all B sequences, in device memory. */
interface DeviceLayerState {
  // views into the store's one packed allocation
  keyCodes: CudaTensor; // u8 [B, Ccap, packedCodeBytes(R·G)]
  keyNorms: CudaTensor; // bf16 [B, Ccap]: n_t
  valueBits: CudaTensor; // u8 [B, Ccap, N_c/8]
  valueRho: CudaTensor; // bf16 [B, Ccap]: ρ′_t
  exactKPre: Tensor; // bf16 [B·X, D]: exact tokens before RoPE (encoded when their block is flushed)
  exactK: Tensor; // bf16 [B·X, D]: exact tokens after RoPE (attention)
  exactV: Tensor; // bf16 [B·X, D]
  compressedCount: Tensor; // i32 [B]: N_b of a decode step
  exactCount: Tensor; // i32 [B]: E_b
}

/** What encoding one layer needs beside its codebooks (DeviceStore.encodersOf). */
interface LayerEncoders {
  layer: number;
  /** θ, R, G, D_h and the θ tables built from them */
  key: DeviceKeyLayer & { tables: DeviceKeyTables };
}

/**
 * The CommVQ store in device memory: compressed tokens packed (12-bit key codes and a bf16 norm; N_c value bits and
 * a bf16 ρ′) in one allocation for every layer and sequence, exact sinks and window in bf16; only θ (f32) and E
 * (bf16) of the codebooks are resident, the value encoders' two matrices in bf16 like the model's weights.
 *
 * - Encoding on the GPU: keys by the greedy residual encoder (keys/gpu/gpu-encode.ts), values by the trained encoder
 *   with bf16 GEMMs (ops/value-encode.ts; a sampled block through CudaTrainOps), packed by kernels/commvq_pack.cu; the parts of several sequences in one pass.
 * - A decode step attends on the codes (backend/cuda/ops/code-attention.ts): one launch sequence for the whole batch.
 * - A strict prompt chunk attends over the dequantized prefix (device-prompt.ts).
 */
export class DeviceCommvqStore implements CommvqStore {
  readonly preallocated = true;
  private readonly X: number; // exact rows per sequence: sinks + W
  private readonly Ccap: number; // compressed rows per sequence (a multiple of 64)
  private readonly D: number;
  private readonly Nc: number;
  private sampling: CudaTrainOps | undefined; // the Gumbel encoder's ops, made when a sampled block first comes
  private readonly books: DeviceLayerBooks[] = [];
  private readonly layers: DeviceLayerState[] = [];
  private readonly invFreq: Tensor; // f32 [D_h/2]
  private packedAll: Tensor | undefined; // u8: every layer's keyCodes, keyNorms, valueBits, valueRho
  private rotation: Tensor | undefined; // f32 [Ccap, D_h/2, 2]: e^{iφ} of every compressed position, shared by all layers
  private readonly prompt: DevicePrompt;
  private readonly phases: PhaseTimer | undefined; // key and value encoding, when asked to time them
  private encoders: LayerEncoders | undefined; // see encodersOf

  constructor(
    private readonly backend: CudaBackend,
    private readonly s: StoreSettings,
  ) {
    const { shape, rule, options: o } = s;
    this.X = rule.exactRows;
    this.Ccap = Math.ceil(Math.max(0, s.capacity - rule.sinks) / 64) * 64;
    this.D = shape.kvHeads * shape.headDim;
    this.Nc = o.valueShape.codeBits;
    this.invFreq = backend.fromArray(o.rope.invFreq, [o.rope.invFreq.length], 'f32');
    this.prompt = new DevicePrompt(backend, s, this);
    this.phases = o.timePhases ? new PhaseTimer(backend.ctx) : undefined;
    try {
      this.rotation = emptyTensor(backend.ctx, [Math.max(this.Ccap, 1), shape.headDim / 2, 2], 'f32');
      launchRotationTable(backend.ctx, { invFreq: this.invFreq, rotation: this.rotation }, rule.sinks, Math.max(this.Ccap, 1));
      this.allocate();
    } catch (err) {
      this.dispose(); // out of memory part way: give back what was taken
      throw err;
    }
  }

  private allocate(): void {
    const { shape, options: o, batch: B } = this.s;
    const backend = this.backend;
    // every layer's packed arrays in one zeroed allocation: per-array blocks would each round up to 2 MiB
    // (≈ 0.1 GiB over 32 layers at 128K)
    const arrays = [
      { shape: [B, this.Ccap, packedCodeBytes(this.s.residuals * shape.kvHeads)], dtype: 'u8' },
      { shape: [B, this.Ccap], dtype: 'bf16' },
      { shape: [B, this.Ccap, this.Nc / 8], dtype: 'u8' },
      { shape: [B, this.Ccap], dtype: 'bf16' },
    ] as const;
    const aligned = arrays.map((a) => Math.ceil(Math.max(numel(a.shape) * bytesPerElement(a.dtype), 16) / 256) * 256);
    const perLayer = aligned.reduce((a, n) => a + n, 0);
    const packed = emptyTensor(backend.ctx, [shape.numLayers * perLayer], 'u8');
    this.packedAll = packed;
    zeroFill(backend.ctx, packed);
    for (let l = 0; l < shape.numLayers; l++) {
      const value = o.values.get(l)!;
      this.books.push(uploadBooks(backend, o.keys.get(l)!, value.params, value.scale));
      let at = l * perLayer;
      const [keyCodes, keyNorms, valueBits, valueRho] = arrays.map((a, i) => {
        const view = packed.view(at, a.shape, a.dtype);
        at += aligned[i]!;
        return view;
      });
      this.layers.push({
        keyCodes: keyCodes!, keyNorms: keyNorms!, valueBits: valueBits!, valueRho: valueRho!,
        exactKPre: backend.zeros([B * this.X, this.D], 'bf16'),
        exactK: backend.zeros([B * this.X, this.D], 'bf16'),
        exactV: backend.zeros([B * this.X, this.D], 'bf16'),
        compressedCount: backend.zeros([B], 'i32'),
        exactCount: backend.zeros([B], 'i32'),
      });
    }
  }

  // ---- tokens in --------------------------------------------------------------------------------------------------

  encode(layer: number, parts: readonly EncodePart[], kv?: LayerKV): void {
    const total = parts.reduce((n, p) => n + p.held + p.rows, 0);
    if (total === 0) return;
    for (const p of parts) {
      if (p.at + p.held + p.rows > this.Ccap) throw new CommvqError(`KV cache full: ${p.at + p.held + p.rows} compressed tokens exceed ${this.Ccap}`);
    }
    const st = this.layers[layer]!;
    scoped((s) => {
      const kPre = s.keep(gatherRows(this.backend, parts, { held: st.exactKPre, step: kv?.kPre, exactRows: this.X }, total));
      const v = s.keep(gatherRows(this.backend, parts, { held: st.exactV, step: kv?.v, exactRows: this.X }, total));
      const runs = encodeRuns(parts);
      // whole blocks per pass: a block's tokens draw their noise stream in one encoder call
      const W = this.s.rule.window;
      const chunk = Math.max(W, Math.floor(ENCODE_CHUNK / W) * W);
      const encoders = this.encodersOf(layer);
      for (let t0 = 0; t0 < total; t0 += chunk) {
        const t1 = Math.min(total, t0 + chunk);
        const keys = rowView(kPre, t0, t1 - t0);
        const values = rowView(v, t0, t1 - t0);
        const inChunk = runs.filter((r) => r.from < t1 && r.to > t0).map((r) => ({ ...r, at: r.at + Math.max(0, t0 - r.from), from: Math.max(r.from, t0) - t0, to: Math.min(r.to, t1) - t0 }));
        this.encodeChunk(layer, encoders, keys, values, t1 - t0, inChunk);
      }
    });
  }

  keepExact(layer: number, sequence: number, slot: number, kv: LayerKV, row: number, count: number): void {
    const b = this.backend;
    const st = this.layers[layer]!;
    for (const [dst, src] of [[st.exactKPre, kv.kPre], [st.exactK, kv.k], [st.exactV, kv.v]] as const) {
      b.writeRows(dst, sequence * this.X + slot, rowView(src, row, count));
    }
  }

  // ---- attention --------------------------------------------------------------------------------------------------

  attendTokens(layer: number, q: Tensor, tokens: readonly DecodeToken[]): Tensor {
    const b = this.backend;
    const st = this.layers[layer]!;
    const { shape } = this.s;
    const first = tokens[0]!.sequence; // the step's sequences are `first` and those after it
    const compressed = new Array<number>(this.s.batch).fill(0);
    const exact = new Array<number>(this.s.batch).fill(0);
    for (const t of tokens) [compressed[t.sequence], exact[t.sequence]] = [t.compressed, t.exact];
    b.upload(st.compressedCount, compressed);
    b.upload(st.exactCount, exact);
    return allOrNothing((s) => {
      const out = s.keep(b.zeros([tokens.length, shape.queryHeads * shape.headDim], 'bf16'));
      const books = this.books[layer]!;
      codeAttentionStep(b.ctx, {
        q, theta: books.attentionTheta, invFreq: this.invFreq, rotation: this.rotation!,
        keyCodes: st.keyCodes, keyNorms: st.keyNorms, valueBits: st.valueBits, valueRho: st.valueRho,
        codebook: books.codebook, scale: books.scale,
        exactKeys: st.exactK, exactValues: st.exactV, compressed: st.compressedCount, exact: st.exactCount,
        out,
      }, {
        batch: tokens.length,
        queryHeads: shape.queryHeads,
        kvHeads: shape.kvHeads,
        headDim: shape.headDim,
        residuals: this.s.residuals,
        codeBits: this.Nc,
        capacity: this.Ccap,
        window: this.X,
        firstPosition: this.s.rule.sinks,
        maxCompressed: Math.max(...tokens.map((t) => t.compressed)),
      }, { sequence: first });
      return out;
    });
  }

  attendPrompt(layer: number, chunk: PromptChunk, q: Tensor, kv: LayerKV): Tensor {
    return this.prompt.attend(layer, chunk, q, kv);
  }

  /** The exact rows of a layer (bf16 [B·X, D]): the strict prompt reads the held ones. */
  exactRows(layer: number): { k: Tensor; v: Tensor } {
    return { k: this.layers[layer]!.exactK, v: this.layers[layer]!.exactV };
  }

  // ---- tokens out -------------------------------------------------------------------------------------------------

  packed(layer: number, sequence: number, count: number): PackedTokens {
    const st = this.layers[layer]!;
    this.backend.synchronize();
    const read = (name: 'keyCodes' | 'keyNorms' | 'valueBits' | 'valueRho') => {
      const rows = st[name].at(sequence).rows(0, count);
      return count > 0 ? downloadFrom(this.backend.ctx, rows, new Uint8Array(rows.byteLength)) : new Uint8Array(0);
    };
    const u16 = (bytes: Uint8Array) => new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    return { keyCodes: read('keyCodes'), keyNorms: u16(read('keyNorms')), valueBits: read('valueBits'), valueRho: u16(read('valueRho')) };
  }

  dequantized(layer: number, sequence: number, count: number): { keys: Float32Array; values: Float32Array } {
    if (count === 0) return { keys: new Float32Array(0), values: new Float32Array(0) };
    const b = this.backend;
    return scoped((s) => {
      const keys = s.keep(b.zeros([count, this.D], 'bf16'));
      const values = s.keep(b.zeros([count, this.D], 'bf16'));
      this.dequantizeInto(layer, sequence, 0, count, keys, 0, values, 0);
      return { keys: b.toFloat32(keys), values: b.toFloat32(values) };
    });
  }

  /**
   * kPre rows [kRow, …) and v rows [vRow, …) (bf16 [·, D]) ← compressed tokens t0..t1−1 of a sequence dequantized:
   * pre-RoPE keys k̂ = n·Σ_r C_r[code], values v̂ = (b·E)·ρ′ ⊙ (ls + ε).
   */
  dequantizeInto(layer: number, sequence: number, t0: number, t1: number, kPre: Tensor, kRow: number, v: Tensor, vRow: number): void {
    const ctx = this.backend.ctx;
    const books = this.books[layer]!;
    const st = this.layers[layer]!;
    const rows = { sequence, rowStart: t0, tokens: t1 - t0 };
    launchDequantKeys(ctx, { keyCodes: st.keyCodes, keyNorms: st.keyNorms, theta: books.theta, out: rowView(kPre, kRow, t1 - t0) },
      { ...rows, residuals: this.s.residuals, groups: this.s.shape.kvHeads, headDim: this.s.shape.headDim });
    launchDequantValues(ctx, { valueBits: st.valueBits, valueRho: st.valueRho, codebook: books.codebook, scale: books.scale, out: rowView(v, vRow, t1 - t0) }, rows);
  }

  /** Bytes of the device buffers that hold tokens: packed arrays at capacity, exact rows, counts, the rotation table. */
  bytes(): number {
    const bytesOf = (t: Tensor) => numel(t.shape) * bytesPerElement(t.dtype);
    let total = this.rotation ? bytesOf(this.rotation) : 0;
    for (const s of this.layers) {
      total += [s.keyCodes, s.keyNorms, s.valueBits, s.valueRho, s.exactKPre, s.exactK, s.exactV, s.compressedCount, s.exactCount].reduce((n, t) => n + bytesOf(t), 0);
    }
    return total;
  }

  residentBytes(): { codebooks: number; encoders: number } {
    return booksBytes(this.books);
  }

  phaseTimes(): Record<string, number> {
    return this.phases?.totals() ?? {};
  }

  endPrompt(): void {
    this.releaseEncoders();
    this.prompt.endPrompt();
  }

  dispose(): void {
    for (const s of this.layers) [s.exactKPre, s.exactK, s.exactV, s.compressedCount, s.exactCount].forEach((t) => t.dispose());
    disposeBooks(this.books);
    this.invFreq.dispose();
    this.rotation?.dispose();
    this.rotation = undefined;
    this.packedAll?.dispose();
    this.packedAll = undefined;
    this.endPrompt();
    this.sampling?.dispose(); // its cuBLASLt handle and 32 MiB workspace (an eval makes a cache per example)
    this.sampling = undefined;
    this.layers.length = 0;
    this.books.length = 0;
  }

  // ---- inside -------------------------------------------------------------------------------------------------------

  /**
   * What encoding `layer` needs beside its codebooks: the θ tables (DeviceKeyTables, 4.3 MB at 1 bit for
   * Llama-3.1-8B). A prompt run layer by layer encodes all of one layer's row chunks in a row, so they are made once
   * per layer and prompt, not once per chunk; another layer's encode replaces them, and endPrompt (each decode step
   * too) frees them.
   */
  private encodersOf(layer: number): LayerEncoders {
    if (this.encoders?.layer !== layer) {
      this.releaseEncoders();
      const b = this.backend;
      const books = this.books[layer]!;
      const key = { theta: books.theta, residuals: this.s.residuals, groups: this.s.shape.kvHeads, headDim: this.s.shape.headDim };
      const tables = this.timed('keys', () => DeviceKeyTables.build(b.ctx, key));
      this.encoders = { layer, key: { ...key, tables } };
    }
    return this.encoders;
  }

  /** Frees the tables encodersOf made (not the codebooks). */
  private releaseEncoders(): void {
    this.encoders?.key.tables.dispose();
    this.encoders = undefined;
  }

  /** `work`, its GPU time added to `phase` when phases are timed. */
  private timed<T>(phase: string, work: () => T): T {
    return this.phases ? this.phases.time(phase, work) : work();
  }

  /** Encodes m gathered tokens and packs each run's rows [from, to) into its sequence's compressed rows. */
  private encodeChunk(layer: number, encoders: LayerEncoders, keys: Tensor, values: Tensor, m: number, runs: readonly EncodeRun[]): void {
    const enc = this.timed('keys', () => encodeKeysOnDevice(this.backend.ctx, encoders.key, keys));
    try {
      this.packChunk(layer, enc, values, m, runs);
    } finally {
      enc.dispose();
    }
  }

  /** Packs the key codes of an encoded chunk and encodes and packs its values, run by run. */
  private packChunk(layer: number, enc: EncodedKeys, values: Tensor, m: number, runs: readonly EncodeRun[]): void {
    const b = this.backend;
    const books = this.books[layer]!;
    const G = this.s.shape.kvHeads;
    const st = this.layers[layer]!;
    for (const { sequence, at, from, to, noise } of runs) {
      const rows = { sequence, rowStart: at, tokens: to - from };
      this.timed('keys', () => launchPackKeys(b.ctx, { codes: enc.codes, n2: enc.n2, keyCodes: st.keyCodes, keyNorms: st.keyNorms }, { ...rows, residuals: this.s.residuals, groups: G, from }));
      const share = to - from === m ? values : rowView(values, from, to - from);
      const packed = { codebook: books.codebook, valueBits: st.valueBits, valueRho: st.valueRho };
      this.timed('values', () => {
        if (noise === 'argmax') {
          launchEncodeValuesArgmax(b.ctx, b.blas(), { values: share, scale: books.scale, encoder: books.encoder, ...packed }, rows);
          return;
        }
        // a sampled block: the training path's encoder with its Gumbel noise, in bf16 GEMMs like the argmax one
        const ops = (this.sampling ??= new CudaTrainOps(b, { matmul: 'bf16' }));
        scoped((s) => {
          const { bits, rho } = encodeValues(ops, books.encoder, share, books.scale, noise);
          launchPackValues(b.ctx, { bits: s.keep(bits), rho: s.keep(rho), ...packed }, rows);
        });
      });
    }
  }
}
