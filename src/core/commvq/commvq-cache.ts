import type { Backend } from '../backend/backend.js';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { CommvqError } from '../errors.js';
import type { LayerKeyCodebook } from '../keys/codebook.js';
import { decodeKeys, encodeKeys } from '../keys/encoder.js';
import type { CacheShape, KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepInputs } from '../model/step-inputs.js';
import { attentionF32 } from '../backend/cpu/cpu-ops.js';
import type { RopeTable } from '../backend/backend.js';
import { bf16ToF32, f32ToBf16 } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { CpuTrainOps } from '../values/cpu-train-ops.js';
import { encodeValues, type ValueCompressorParams, type ValueCompressorShape } from '../values/value-compressor.js';
import { codeLogits, codeValues, queryTables } from './code-attention.js';
import { packBits, packCodes12, packedCodeBytes, unpackBits, unpackCodes12 } from './code-packing.js';
import { Growable } from './growable.js';
import { commvqBytesPerToken } from '../memory/cache-accounting.js';

/** How the prompt's own attention is computed (spec §10.1 item 1); every result records which. */
export type PrefillMode = 'faithful' | 'strict';

export interface CommvqCacheOptions {
  /** per layer: the key codebook (θ) and the value compressor with its frozen scale, on the host (f32) */
  keys: ReadonlyMap<number, LayerKeyCodebook>;
  values: ReadonlyMap<number, { params: ValueCompressorParams; scale: Tensor }>;
  valueShape: ValueCompressorShape;
  rope: RopeTable;
  /** exact window W (reference 128): tokens are compressed in aligned blocks of W */
  window?: number;
  /** the first `sinks` tokens stay exact (default 0: the reference keeps none) */
  sinks?: number;
  prefill?: PrefillMode;
  /** value codes: deterministic argmax (default), or the reference's Gumbel sampling with a seed (§10.1 item 2) */
  valueEncoding?: 'argmax' | { gumbelSeed: number };
  capacity: number;
  /** sequences held (default 1) */
  batch?: number;
}

/** The options' defaults, shared by the host and device caches: window 128, no sinks, faithful prefill, one sequence. */
export function commvqCacheDefaults(o: CommvqCacheOptions): { window: number; sinks: number; prefill: PrefillMode; batch: number } {
  return { window: o.window ?? 128, sinks: o.sinks ?? 0, prefill: o.prefill ?? 'faithful', batch: o.batch ?? 1 };
}

/** One layer's state: compressed tokens as packed codes, and the exact tokens (sinks and the recent window). */
class LayerState {
  readonly keyCodes = new Growable((n) => new Uint8Array(n)); // packed 12-bit, token-major [t][r][g]
  readonly keyNorms = new Growable((n) => new Uint16Array(n)); // bf16 n_t
  readonly valueBits = new Growable((n) => new Uint8Array(n)); // packed LSB-first, N_c bits per token
  readonly valueRho = new Growable((n) => new Uint16Array(n)); // bf16 ρ′_t = (ρ_t + ε)/(‖b_t E‖ + ε)
  compressed = 0; // tokens in codes: absolute positions sinks .. sinks + compressed − 1
  /** exact tokens in order: sinks first, then the window; rows of width D, f32 */
  exactKPre: number[][] = [];
  exactK: number[][] = [];
  exactV: number[][] = [];
  /** the compressed tokens unpacked for attention, rebuilt only when a block is compressed (once every W tokens) */
  unpacked?: UnpackedTokens;
}

/** Compressed tokens in the forms code-attention.ts reads: codes token-major [t][r][g], f32 norms, ρ′ and bits. */
interface UnpackedTokens {
  tokens: number;
  codes: Uint16Array;
  norms: Float32Array;
  rhoPrime: Float32Array;
  bits: Float32Array;
  positions: Int32Array;
}

/**
 * The CommVQ cache (spec §6, §7): keys as 12-bit residual codes of the RoPE-commutative codebook plus a bf16 norm,
 * values as N_c bits plus a bf16 scale, the most recent tokens exact. Attention of a decoding token runs on the codes
 * (code-attention.ts); the prompt's attention is exact (`faithful`, the reference) or already sees the compressed
 * prefix (`strict`: 128-aligned blocks, the same as decoding the prompt token by token).
 * This implementation keeps its state on the host and computes in f64/f32: the reference the GPU kernels match.
 *
 *   const cache = new CommvqCache(backend, model.cacheShape, { keys, values, valueShape, rope: model.rope, capacity });
 */
export class CommvqCache implements KVCache {
  readonly capacity: number;
  /** the host reference reads its inputs back from the device: not recordable */
  readonly replayable = false;
  readonly batch: number;
  private readonly states: LayerState[][]; // [sequence][layer]
  private readonly W: number;
  private readonly sinks: number;
  private readonly mode: PrefillMode;
  private readonly ops = new CpuTrainOps(new CpuBackend());
  private readonly lengths: number[][]; // [sequence][layer]
  private readonly valueHost = new Map<number, { E: Float32Array; ls: Float32Array }>();
  private readonly pending = new Map<number, { kPre: Float32Array; k: Float32Array; v: Float32Array }>();

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    private readonly o: CommvqCacheOptions,
  ) {
    this.capacity = o.capacity;
    ({ window: this.W, sinks: this.sinks, prefill: this.mode, batch: this.batch } = commvqCacheDefaults(o));
    this.states = Array.from({ length: this.batch }, () => Array.from({ length: shape.numLayers }, () => new LayerState()));
    this.lengths = Array.from({ length: this.batch }, () => new Array<number>(shape.numLayers).fill(0));
    for (let l = 0; l < shape.numLayers; l++) {
      if (!o.keys.has(l)) throw new CommvqError(`key codebook has no layer ${l}`, 'train it with commvq train-key --layers all');
      if (!o.values.has(l)) throw new CommvqError(`value codebook has no layer ${l}`, 'train it with commvq train-value');
    }
  }

  get prefillMode(): PrefillMode {
    return this.mode;
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.lengths[sequence]!);
  }

  append(layer: number, kv: LayerKV, step: StepInputs): void {
    for (const g of step.groups) {
      if (g.sequence >= this.batch) throw new Error(`sequence ${g.sequence} of a cache of ${this.batch}`);
      if (g.start + g.tokens > this.capacity) throw new CommvqError(`KV cache full: ${g.start} + ${g.tokens} tokens exceed its capacity of ${this.capacity}`);
      const held = this.lengths[g.sequence]![layer]!;
      if (g.start !== held) throw new CommvqError(`the CommVQ cache appends in order: step at ${g.start}, cache holds ${held}`);
    }
    const host = (t: Tensor) => this.backend.toFloat32(t);
    this.pending.set(layer, { kPre: host(kv.kPre), k: host(kv.k), v: host(kv.v) });
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const p = this.pending.get(layer);
    if (!p) throw new Error(`attend(${layer}) before append`);
    this.pending.delete(layer);
    const qs = this.backend.toFloat32(q);
    const { queryHeads: Hq, headDim: Dh } = this.shape;
    const out = new Float32Array(step.tokens * Hq * Dh);
    const D = this.shape.kvHeads * Dh;
    for (const g of step.groups) {
      // each sequence's rows, as if it were alone
      const rows = (a: Float32Array, width: number) => a.subarray(g.row * width, (g.row + g.tokens) * width);
      const part = this.attendSequence(layer, g.sequence, g.start, { kPre: rows(p.kPre, D), k: rows(p.k, D), v: rows(p.v, D) }, rows(qs, Hq * Dh));
      out.set(part, g.row * Hq * Dh);
      this.lengths[g.sequence]![layer] = g.start + g.tokens;
    }
    return this.backend.fromArray(out, q.shape, this.backend.activationDType);
  }

  /** T tokens of one sequence from `start`: kv rows [T, D], queries [T, H_q·D_h] → outputs [T, H_q·D_h]. */
  private attendSequence(layer: number, seq: number, start: number, kv: { kPre: Float32Array; k: Float32Array; v: Float32Array }, qs: Float32Array): Float32Array {
    const { queryHeads: Hq, headDim: Dh } = this.shape;
    const D = this.shape.kvHeads * Dh;
    const T = kv.k.length / D;
    const out = new Float32Array(T * Hq * Dh);
    const s = this.states[seq]![layer]!;
    const rows = (a: Float32Array, i: number) => Array.from(a.subarray(i * D, (i + 1) * D));
    const addExact = (i: number) => {
      s.exactKPre.push(rows(kv.kPre, i));
      s.exactK.push(rows(kv.k, i));
      s.exactV.push(rows(kv.v, i));
    };
    if (T > 1 && this.mode === 'faithful') {
      if (start !== 0) throw new CommvqError('faithful prefill runs the whole prompt in one forward (the cache must be empty)', 'use --prefill strict for chunked prompts');
      // exact attention over the prompt (spec §6.3), then compress its aligned prefix
      out.set(attentionF32(qs, kv.k, kv.v, { ...this.shapeOf(0, T) }));
      for (let i = 0; i < T; i++) addExact(i);
      this.compressAligned(s, layer, start + T);
    } else {
      for (let i = 0; i < T; i++) {
        const pos = start + i;
        // decoding rule (§6.6): a full window is flushed before the next token is appended
        this.compressAligned(s, layer, pos);
        addExact(i);
        out.set(this.attendOne(s, layer, qs.subarray(i * Hq * Dh, (i + 1) * Hq * Dh), pos), i * Hq * Dh);
      }
    }
    return out;
  }

  seek(length: number): void {
    if (length !== this.length) throw new CommvqError('the CommVQ cache cannot rewind or skip tokens (codes are not kept per step)');
  }

  /** Bytes held: packed codes, norms, bits and scales of compressed tokens, plus the exact tokens (f32 here). */
  bytes(): number {
    let total = 0;
    for (const s of this.states.flat()) {
      total += s.keyCodes.length + 2 * s.keyNorms.length + s.valueBits.length + 2 * s.valueRho.length;
      total += s.exactK.length * 3 * this.shape.kvHeads * this.shape.headDim * 4;
    }
    return total;
  }

  /** Bytes per compressed token per layer: the packed arithmetic (keys: R·G·12 bits + a bf16 norm; values: N_c bits + a bf16 scale). */
  get compressedBytesPerToken(): { key: number; value: number } {
    const cb = this.o.keys.get(0)!;
    return commvqBytesPerToken(this.shape, { residuals: cb.shape.residuals, codeBits: this.o.valueShape.codeBits, window: this.W });
  }

  dispose(): void {
    for (const seq of this.states) seq.forEach((_, i) => (seq[i] = new LayerState()));
  }

  private shapeOf(qStart: number, kvLength: number) {
    return { queryHeads: this.shape.queryHeads, kvHeads: this.shape.kvHeads, headDim: this.shape.headDim, qStart, kvLength };
  }

  /** Compresses exact window tokens below the last W-aligned boundary at or before `position` (sinks stay exact). */
  private compressAligned(s: LayerState, layer: number, position: number): void {
    const boundary = Math.max(this.sinks, this.sinks + Math.floor((position - this.sinks) / this.W) * this.W);
    const firstWindow = this.sinks + s.compressed; // absolute position of the window's first token
    const count = boundary - firstWindow;
    if (count <= 0) return;
    const exactSinks = Math.min(this.sinks, s.exactK.length);
    const take = (a: number[][]) => a.splice(exactSinks, count);
    const kPre = Float32Array.from(take(s.exactKPre).flat());
    take(s.exactK);
    const v = Float32Array.from(take(s.exactV).flat());
    this.encodeBlock(s, layer, kPre, v, count);
  }

  /** Encodes `n` tokens' pre-RoPE keys and values [n, D] into the layer's packed state. */
  private encodeBlock(s: LayerState, layer: number, kPre: Float32Array, v: Float32Array, n: number): void {
    const cb = this.o.keys.get(layer)!;
    const { residuals: R, groups: G } = cb.shape;
    const enc = encodeKeys(cb, kPre); // codes [R, G, n]
    const perToken = new Uint16Array(R * G);
    for (let t = 0; t < n; t++) {
      for (let r = 0; r < R; r++) for (let g = 0; g < G; g++) perToken[r * G + g] = enc.codes[(r * G + g) * n + t]!;
      s.keyCodes.push(packCodes12(perToken));
      s.keyNorms.push([f32ToBf16(enc.norms[t]!)]);
    }
    const value = this.o.values.get(layer)!;
    const ops = this.ops;
    const vt = ops.backend.fromArray(v, [n, this.o.valueShape.featDim], 'f32');
    const encoding = this.o.valueEncoding ?? 'argmax';
    // one noise stream per layer and block of tokens: reproducible for a seed, fresh for every block
    const noise = encoding === 'argmax' ? 'argmax' : { seed: encoding.gumbelSeed, stream: ((layer << 20) ^ s.compressed) >>> 0 };
    const { bits, rho } = encodeValues(ops, value.params, vt, value.scale, noise);
    const w = ops.matmul(bits, value.params.codebook); // [n, D]
    const bitValues = ops.backend.toFloat32(bits);
    const rhoValues = ops.backend.toFloat32(rho);
    const wValues = ops.backend.toFloat32(w);
    const D = this.o.valueShape.featDim;
    const Nc = this.o.valueShape.codeBits;
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let c = 0; c < D; c++) ss += wValues[t * D + c]! ** 2;
      s.valueBits.push(packBits(bitValues.subarray(t * Nc, (t + 1) * Nc)));
      s.valueRho.push([f32ToBf16((rhoValues[t]! + 1e-6) / (Math.sqrt(ss) + 1e-6))]);
    }
    [vt, bits, rho, w].forEach((x) => x.dispose());
    s.compressed += n;
  }

  /** One query token at `pos` over compressed tokens (on codes) and exact ones, joint softmax (§6.6, §6.8). */
  private attendOne(s: LayerState, layer: number, q: Float32Array, pos: number): Float32Array {
    const cb = this.o.keys.get(layer)!;
    const { queryHeads: Hq, kvHeads: Hkv, headDim: Dh } = this.shape;
    const D = Hkv * Dh;
    const group = Hq / Hkv;
    const N = s.compressed;
    const { codes, norms, rhoPrime, bits, positions } = this.unpacked(s, layer);
    const Nc = this.o.valueShape.codeBits;
    // exact tokens (sinks, then the window) have their keys already rotated
    const { E, ls } = this.valueTables(layer);
    const out = new Float32Array(Hq * Dh);
    const logits = new Float64Array(N);
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const table = queryTables(cb, kvh, q, h * Dh);
      codeLogits(cb, kvh, table, codes, norms, positions, this.o.rope.invFreq, logits);
      const exact = s.exactK.map((k) => {
        let d = 0;
        for (let c = 0; c < Dh; c++) d += q[h * Dh + c]! * k[kvh * Dh + c]!;
        return d / Math.sqrt(Dh);
      });
      let max = -Infinity;
      for (let t = 0; t < N; t++) max = Math.max(max, logits[t]!);
      for (const e of exact) max = Math.max(max, e);
      let sum = 0;
      const wc = new Float64Array(N);
      for (let t = 0; t < N; t++) sum += wc[t] = Math.exp(logits[t]! - max);
      const we = exact.map((e) => Math.exp(e - max));
      for (const w of we) sum += w;
      for (let t = 0; t < N; t++) wc[t] = wc[t]! / sum;
      const acc = new Float64Array(Dh);
      codeValues(wc, rhoPrime, bits, Nc, E, D, kvh, Dh, ls, acc);
      we.forEach((w, i) => {
        for (let c = 0; c < Dh; c++) acc[c] += (w / sum) * s.exactV[i]![kvh * Dh + c]!;
      });
      for (let c = 0; c < Dh; c++) out[h * Dh + c] = acc[c]!;
    }
    return out;
  }

  /** The layer's compressed tokens unpacked, cached until the next block is compressed. */
  private unpacked(s: LayerState, layer: number): UnpackedTokens {
    if (s.unpacked?.tokens === s.compressed) return s.unpacked;
    const { residuals: R, groups: G } = this.o.keys.get(layer)!.shape;
    const N = s.compressed;
    const Nc = this.o.valueShape.codeBits;
    const keyBytes = packedCodeBytes(R * G);
    const codes = new Uint16Array(N * R * G);
    const bits = new Float32Array(N * Nc);
    for (let t = 0; t < N; t++) {
      unpackCodes12(s.keyCodes.view(), R * G, t * keyBytes, codes.subarray(t * R * G, (t + 1) * R * G));
      unpackBits(s.valueBits.view(), Nc, t * (Nc / 8), bits.subarray(t * Nc, (t + 1) * Nc));
    }
    s.unpacked = {
      tokens: N,
      codes,
      norms: Float32Array.from(s.keyNorms.view(), bf16ToF32),
      rhoPrime: Float32Array.from(s.valueRho.view(), bf16ToF32),
      bits,
      positions: Int32Array.from({ length: N }, (_, t) => this.sinks + t),
    };
    return s.unpacked;
  }

  /** The value codebook E and scale ls of a layer as host arrays, read once. */
  private valueTables(layer: number): { E: Float32Array; ls: Float32Array } {
    let tables = this.valueHost.get(layer);
    if (!tables) {
      const value = this.o.values.get(layer)!;
      tables = { E: this.ops.backend.toFloat32(value.params.codebook), ls: this.ops.backend.toFloat32(value.scale) };
      this.valueHost.set(layer, tables);
    }
    return tables;
  }

  /**
   * The compressed tokens of a layer dequantized (keys pre-RoPE, values), for tests and for dense comparisons:
   * k̂_t = n_t·Σ_r C_r[code] (HF layout), v̂_t = (b_t·E)·ρ′_t ⊙ (ls + ε).
   */
  dequantized(layer: number, sequence = 0): { keys: Float32Array; values: Float32Array; positions: Int32Array } {
    const cb = this.o.keys.get(layer)!;
    const RG = cb.shape.residuals * cb.shape.groups;
    const u = this.unpacked(this.states[sequence]![layer]!, layer);
    const N = u.tokens;
    const codes = new Uint16Array(RG * N); // [R, G, N] as encodeKeys makes them
    for (let t = 0; t < N; t++) for (let i = 0; i < RG; i++) codes[i * N + t] = u.codes[t * RG + i]!;
    const keys = decodeKeys(cb, { tokens: N, codes, norms: u.norms });
    const b = this.ops.backend.fromArray(u.bits, [N, this.o.valueShape.codeBits], 'f32');
    const w = this.ops.matmul(b, this.o.values.get(layer)!.params.codebook);
    const wv = this.ops.backend.toFloat32(w);
    [b, w].forEach((t) => t.dispose());
    const { ls } = this.valueTables(layer);
    const D = ls.length;
    const values = new Float32Array(N * D);
    for (let t = 0; t < N; t++) for (let c = 0; c < D; c++) values[t * D + c] = wv[t * D + c]! * u.rhoPrime[t]! * (ls[c]! + 1e-6);
    return { keys, values, positions: u.positions };
  }
}

