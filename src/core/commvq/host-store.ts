import type { Backend } from '../backend/backend.js';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { ropeF32 } from '../backend/cpu/cpu-ops.js';
import { CommvqError } from '../errors.js';
import { decodeKeys, encodeKeys } from '../keys/encoder.js';
import type { LayerKV } from '../model/llama.js';
import { bf16ToF32, bytesPerElement, f32ToBf16 } from '../tensor/dtype.js';
import { numel } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { CpuTrainOps } from '../values/cpu-train-ops.js';
import { encodeValues } from '../values/value-compressor.js';
import { codeLogits, codeValues, queryTables } from './code-attention.js';
import { packBits, packCodes12, packedCodeBytes, unpackBits, unpackCodes12 } from '../tensor/code-packing.js';
import type { StoreSettings } from './commvq-cache.js';
import type { CommvqStore, DecodeToken, EncodePart, PackedTokens, PromptChunk, TokenCounts } from './commvq-store.js';
import { Growable } from './growable.js';

/** One sequence of one layer: compressed tokens packed as the device stores them, exact tokens in slots (f32). */
class SequenceState {
  readonly keyCodes = new Growable((n) => new Uint8Array(n)); // packed 12-bit, token-major [t][r][g]
  readonly keyNorms = new Growable((n) => new Uint16Array(n)); // bf16 n_t
  readonly valueBits = new Growable((n) => new Uint8Array(n)); // packed LSB-first, N_c bits per token
  readonly valueRho = new Growable((n) => new Uint16Array(n)); // bf16 ρ′_t = (ρ_t + ε)/(‖b_t E‖ + ε)
  /** the half an ablation keeps exact, f32 [t][D]: keys after RoPE (compress=values), values (compress=keys) */
  readonly exactKeys = new Growable((n) => new Float32Array(n));
  readonly exactValues = new Growable((n) => new Float32Array(n));
  compressed = 0;
  /** exact rows [X, D] f32: sinks at their positions, then the window (CommvqRule.slot) */
  readonly kPre: Float32Array;
  readonly k: Float32Array; // after RoPE
  readonly v: Float32Array;
  /** the compressed tokens unpacked for attention, rebuilt when more are compressed */
  unpacked?: UnpackedTokens;

  constructor(rows: number, D: number) {
    [this.kPre, this.k, this.v] = [0, 1, 2].map(() => new Float32Array(rows * D));
  }
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

/** An exact token as attention reads it: its rotated key and its value, rows of D. */
interface ExactRow {
  k: Float32Array;
  v: Float32Array;
}

/**
 * The CommVQ store on the host: the reference the device store and its kernels are tested against. Codes are packed
 * exactly as on the device; encoding runs in f32 (keys: encoder.ts, values: the trained encoder on CpuTrainOps);
 * attention runs on the codes in f64 (code-attention.ts), one query token at a time, over the compressed tokens it
 * may see and its exact tokens, one softmax.
 *
 * The ablations (`compress` keys or values) encode one half only and keep the other half of compressed tokens
 * exact, as the window keeps it (keys after RoPE), attended exactly: only this store has them so far.
 */
export class HostCommvqStore implements CommvqStore {
  readonly preallocated = false;
  private readonly states: SequenceState[][]; // [sequence][layer]
  private readonly ops = new CpuTrainOps(new CpuBackend());
  private readonly D: number;
  private readonly valueTables = new Map<number, { E: Float32Array; ls: Float32Array }>();
  private readonly host = new WeakMap<Tensor, Float32Array>();
  private readonly keysAsCodes: boolean; // keys of compressed tokens as codes (compress both or keys)
  private readonly valuesAsCodes: boolean; // values as codes (compress both or values)

  constructor(
    private readonly backend: Backend,
    private readonly s: StoreSettings,
  ) {
    this.D = s.shape.kvHeads * s.shape.headDim;
    const compress = s.options.compress ?? 'both';
    [this.keysAsCodes, this.valuesAsCodes] = [compress !== 'values', compress !== 'keys'];
    this.states = Array.from({ length: s.batch }, () => Array.from({ length: s.shape.numLayers }, () => new SequenceState(s.rule.exactRows, this.D)));
  }

  encode(layer: number, parts: readonly EncodePart[], kv?: LayerKV): void {
    const D = this.D;
    for (const p of parts) {
      const st = this.states[p.sequence]![layer]!;
      if (p.at !== st.compressed) throw new CommvqError(`host CommVQ store: encoding at compressed row ${p.at}, ${st.compressed} held`);
      const n = p.held + p.rows;
      // [n, D]: the held slots' rows, then the step's
      const gather = (held: Float32Array, step: () => Tensor) => {
        const out = new Float32Array(n * D);
        out.set(held.subarray(p.slot * D, (p.slot + p.held) * D));
        if (p.rows > 0) out.set(this.rows(step()).subarray(p.row * D, (p.row + p.rows) * D), p.held * D);
        return out;
      };
      const v = gather(st.v, () => kv!.v);
      if (this.keysAsCodes) this.encodeKeyCodes(st, layer, gather(st.kPre, () => kv!.kPre), n);
      else st.exactKeys.push(gather(st.k, () => kv!.k));
      if (this.valuesAsCodes) this.encodeValueCodes(st, layer, v, n, p.noise);
      else st.exactValues.push(v);
      st.compressed += n;
    }
  }

  keepExact(layer: number, sequence: number, slot: number, kv: LayerKV, row: number, count: number): void {
    const st = this.states[sequence]![layer]!;
    const D = this.D;
    for (const [dst, src] of [[st.kPre, kv.kPre], [st.k, kv.k], [st.v, kv.v]] as const) {
      dst.set(this.rows(src).subarray(row * D, (row + count) * D), slot * D);
    }
  }

  attendTokens(layer: number, q: Tensor, tokens: readonly DecodeToken[]): Tensor {
    const width = this.s.shape.queryHeads * this.s.shape.headDim;
    const qs = this.rows(q);
    const out = new Float32Array(qs.length);
    for (const t of tokens) {
      const st = this.states[t.sequence]![layer]!;
      const exact = Array.from({ length: t.exact }, (_, slot) => this.exactRow(st, slot));
      out.set(this.attendOne(st, layer, qs.subarray(t.row * width, (t.row + 1) * width), t.compressed, exact), t.row * width);
    }
    return this.backend.fromArray(out, q.shape, this.backend.activationDType);
  }

  attendPrompt(layer: number, chunk: PromptChunk, q: Tensor, kv: LayerKV): Tensor {
    const { rule } = this.s;
    const width = this.s.shape.queryHeads * this.s.shape.headDim;
    const D = this.D;
    const st = this.states[chunk.sequence]![layer]!;
    const qs = this.rows(q);
    const [k, v] = [this.rows(kv.k), this.rows(kv.v)];
    // an exact token: held in its slot before the chunk, or a row of the step
    const exactAt = (p: number): ExactRow => {
      if (p < chunk.start) return this.exactRow(st, rule.slot(p, chunk.compressedBefore));
      const i = p - chunk.start;
      return { k: k.subarray(i * D, (i + 1) * D), v: v.subarray(i * D, (i + 1) * D) };
    };
    const out = new Float32Array(qs.length);
    for (const block of chunk.blocks) {
      for (let p = block.from; p < block.to; p++) {
        const exact: ExactRow[] = [];
        for (let s = 0; s < Math.min(rule.sinks, p + 1); s++) exact.push(exactAt(s));
        for (let e = Math.max(rule.sinks, rule.position(block.visible)); e <= p; e++) exact.push(exactAt(e));
        const i = p - chunk.start;
        out.set(this.attendOne(st, layer, qs.subarray(i * width, (i + 1) * width), block.visible, exact), i * width);
      }
    }
    return this.backend.fromArray(out, q.shape, this.backend.activationDType);
  }

  /** The packed codes; under an ablation the exact half's arrays are empty. */
  packed(layer: number, sequence: number, count: number): PackedTokens {
    const st = this.states[sequence]![layer]!;
    const keyBytes = packedCodeBytes(this.s.residuals * this.s.shape.kvHeads);
    return {
      keyCodes: st.keyCodes.view().slice(0, count * keyBytes),
      keyNorms: st.keyNorms.view().slice(0, count),
      valueBits: st.valueBits.view().slice(0, (count * this.s.options.valueShape.codeBits) / 8),
      valueRho: st.valueRho.view().slice(0, count),
    };
  }

  /** Keys pre-RoPE and values [count, D]; an exact half is its rows (keys rotated back to pre-RoPE, within f32 rounding). */
  dequantized(layer: number, sequence: number, count: number): { keys: Float32Array; values: Float32Array } {
    const st = this.states[sequence]![layer]!;
    const keys = this.keysAsCodes ? this.decodedKeys(st, layer, count) : this.unrotated(st.exactKeys.view().slice(0, count * this.D), count);
    const values = this.valuesAsCodes ? this.decodedValues(st, layer, count) : st.exactValues.view().slice(0, count * this.D);
    return { keys, values };
  }

  private decodedKeys(st: SequenceState, layer: number, count: number): Float32Array {
    const cb = this.s.options.keys.get(layer)!;
    const RG = cb.shape.residuals * cb.shape.groups;
    const u = this.unpacked(st, layer);
    const codes = new Uint16Array(RG * count); // [R, G, N] as encodeKeys makes them
    for (let t = 0; t < count; t++) for (let i = 0; i < RG; i++) codes[i * count + t] = u.codes[t * RG + i]!;
    return decodeKeys(cb, { tokens: count, codes, norms: u.norms.subarray(0, count) });
  }

  private decodedValues(st: SequenceState, layer: number, count: number): Float32Array {
    const u = this.unpacked(st, layer);
    const Nc = this.s.options.valueShape.codeBits;
    const b = this.ops.backend.fromArray(u.bits.subarray(0, count * Nc), [count, Nc], 'f32');
    const w = this.ops.matmul(b, this.s.options.values.get(layer)!.params.codebook);
    const wv = this.ops.backend.toFloat32(w);
    [b, w].forEach((t) => t.dispose());
    const { ls } = this.tables(layer);
    const D = this.D;
    const values = new Float32Array(count * D);
    for (let t = 0; t < count; t++) for (let c = 0; c < D; c++) values[t * D + c] = wv[t * D + c]! * u.rhoPrime[t]! * (ls[c]! + 1e-6);
    return values;
  }

  /** Rotated keys [count, D] back before RoPE: R(−p)·k / s², since RoPE applies s·R(p) (s its attention scaling). */
  private unrotated(k: Float32Array, count: number): Float32Array {
    const { rope } = this.s.options;
    const back = ropeF32(k, Int32Array.from({ length: count }, (_, t) => -this.s.rule.position(t)), rope);
    const s2 = rope.attentionScaling ** 2;
    return s2 === 1 ? back : back.map((x) => x / s2);
  }

  /**
   * Packed codes, norms, bits and scales of compressed tokens, an ablation's exact half (an f32 row per token), plus
   * the exact tokens held (three f32 rows each).
   */
  bytes(counts: readonly (readonly TokenCounts[])[]): number {
    let total = 0;
    this.states.forEach((layers, seq) =>
      layers.forEach((st, layer) => {
        total += st.keyCodes.length + 2 * st.keyNorms.length + st.valueBits.length + 2 * st.valueRho.length;
        total += 4 * (st.exactKeys.length + st.exactValues.length);
        const c = counts[layer]![seq]!;
        total += (c.length - c.compressed) * 3 * this.D * 4;
      }),
    );
    return total;
  }

  residentBytes(): { codebooks: number; encoders: number } {
    let codebooks = 0;
    let encoders = 0;
    for (const [l, cb] of this.s.options.keys) {
      const { params, scale } = this.s.options.values.get(l)!;
      const bytes = (t: Tensor) => numel(t.shape) * bytesPerElement(t.dtype);
      codebooks += 4 * cb.theta.length + bytes(params.codebook) + bytes(scale);
      encoders += [params.lnGamma, params.lnBeta, params.w1, params.b1, params.w2, params.b2].reduce((n, t) => n + bytes(t), 0);
    }
    return { codebooks, encoders };
  }

  endPrompt(): void {}

  dispose(): void {
    for (const seq of this.states) seq.forEach((_, i) => (seq[i] = new SequenceState(this.s.rule.exactRows, this.D)));
  }

  /** Encodes n tokens' pre-RoPE keys [n, D] into the next packed key rows of a sequence. */
  private encodeKeyCodes(st: SequenceState, layer: number, kPre: Float32Array, n: number): void {
    const cb = this.s.options.keys.get(layer)!;
    const { residuals: R, groups: G } = cb.shape;
    const enc = encodeKeys(cb, kPre); // codes [R, G, n]
    const perToken = new Uint16Array(R * G);
    for (let t = 0; t < n; t++) {
      for (let r = 0; r < R; r++) for (let g = 0; g < G; g++) perToken[r * G + g] = enc.codes[(r * G + g) * n + t]!;
      st.keyCodes.push(packCodes12(perToken));
      st.keyNorms.push([f32ToBf16(enc.norms[t]!)]);
    }
  }

  /** Encodes n tokens' values [n, D] into the next packed value rows of a sequence. */
  private encodeValueCodes(st: SequenceState, layer: number, v: Float32Array, n: number, noise: EncodePart['noise']): void {
    const value = this.s.options.values.get(layer)!;
    const ops = this.ops;
    const D = this.D;
    const Nc = this.s.options.valueShape.codeBits;
    const vt = ops.backend.fromArray(v, [n, D], 'f32');
    const { bits, rho } = encodeValues(ops, value.params, vt, value.scale, noise);
    const w = ops.matmul(bits, value.params.codebook); // [n, D]
    const [bitValues, rhoValues, wValues] = [bits, rho, w].map((t) => ops.backend.toFloat32(t));
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let c = 0; c < D; c++) ss += wValues![t * D + c]! ** 2;
      st.valueBits.push(packBits(bitValues!.subarray(t * Nc, (t + 1) * Nc)));
      st.valueRho.push([f32ToBf16((rhoValues![t]! + 1e-6) / (Math.sqrt(ss) + 1e-6))]);
    }
    [vt, bits, rho, w].forEach((x) => x.dispose());
  }

  /** One query token over `visible` compressed tokens (on codes) and the exact ones, joint softmax (§6.6, §6.8). */
  private attendOne(st: SequenceState, layer: number, q: Float32Array, visible: number, exact: readonly ExactRow[]): Float32Array {
    const cb = this.s.options.keys.get(layer)!;
    const { queryHeads: Hq, kvHeads: Hkv, headDim: Dh } = this.s.shape;
    const group = Hq / Hkv;
    const N = visible;
    const u = this.unpacked(st, layer);
    const RG = cb.shape.residuals * cb.shape.groups;
    const Nc = this.s.options.valueShape.codeBits;
    const { E, ls } = this.tables(layer);
    const [keys, values] = [st.exactKeys.view(), st.exactValues.view()]; // an ablation's exact half
    const out = new Float32Array(Hq * Dh);
    const logits = new Float64Array(N);
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const dot = (k: Float32Array, at: number) => {
        let d = 0;
        for (let c = 0; c < Dh; c++) d += q[h * Dh + c]! * k[at + kvh * Dh + c]!;
        return d / Math.sqrt(Dh);
      };
      if (this.keysAsCodes) codeLogits(cb, kvh, queryTables(cb, kvh, q, h * Dh), u.codes.subarray(0, N * RG), u.norms.subarray(0, N), u.positions, this.s.options.rope.invFreq, logits);
      else for (let t = 0; t < N; t++) logits[t] = dot(keys, t * this.D);
      const exactLogits = exact.map(({ k }) => dot(k, 0));
      let max = -Infinity;
      for (let t = 0; t < N; t++) max = Math.max(max, logits[t]!);
      for (const e of exactLogits) max = Math.max(max, e);
      let sum = 0;
      const wc = new Float64Array(N);
      for (let t = 0; t < N; t++) sum += wc[t] = Math.exp(logits[t]! - max);
      const we = exactLogits.map((e) => Math.exp(e - max));
      for (const w of we) sum += w;
      for (let t = 0; t < N; t++) wc[t] = wc[t]! / sum;
      const acc = new Float64Array(Dh);
      if (this.valuesAsCodes) codeValues(wc, u.rhoPrime, u.bits, Nc, E, this.D, kvh, Dh, ls, acc);
      else for (let t = 0; t < N; t++) for (let c = 0; c < Dh; c++) acc[c] += wc[t]! * values[t * this.D + kvh * Dh + c]!;
      we.forEach((w, i) => {
        for (let c = 0; c < Dh; c++) acc[c] += (w / sum) * exact[i]!.v[kvh * Dh + c]!;
      });
      for (let c = 0; c < Dh; c++) out[h * Dh + c] = acc[c]!;
    }
    return out;
  }

  private exactRow(st: SequenceState, slot: number): ExactRow {
    const D = this.D;
    return { k: st.k.subarray(slot * D, (slot + 1) * D), v: st.v.subarray(slot * D, (slot + 1) * D) };
  }

  /** A sequence's compressed tokens unpacked, cached until more are compressed. */
  private unpacked(st: SequenceState, layer: number): UnpackedTokens {
    if (st.unpacked?.tokens === st.compressed) return st.unpacked;
    const { residuals: R, groups: G } = this.s.options.keys.get(layer)!.shape;
    const N = st.compressed;
    const Nc = this.s.options.valueShape.codeBits;
    const keyBytes = packedCodeBytes(R * G);
    const codes = new Uint16Array(N * R * G);
    const bits = new Float32Array(N * Nc);
    for (let t = 0; t < N; t++) {
      if (this.keysAsCodes) unpackCodes12(st.keyCodes.view(), R * G, t * keyBytes, codes.subarray(t * R * G, (t + 1) * R * G));
      if (this.valuesAsCodes) unpackBits(st.valueBits.view(), Nc, t * (Nc / 8), bits.subarray(t * Nc, (t + 1) * Nc));
    }
    st.unpacked = {
      tokens: N,
      codes,
      norms: Float32Array.from(st.keyNorms.view(), bf16ToF32),
      rhoPrime: Float32Array.from(st.valueRho.view(), bf16ToF32),
      bits,
      positions: Int32Array.from({ length: N }, (_, t) => this.s.rule.position(t)),
    };
    return st.unpacked;
  }

  /** The value codebook E and scale ls of a layer as host arrays, read once. */
  private tables(layer: number): { E: Float32Array; ls: Float32Array } {
    let tables = this.valueTables.get(layer);
    if (!tables) {
      const value = this.s.options.values.get(layer)!;
      tables = { E: this.ops.backend.toFloat32(value.params.codebook), ls: this.ops.backend.toFloat32(value.scale) };
      this.valueTables.set(layer, tables);
    }
    return tables;
  }

  /** A tensor's values on the host, converted once per tensor. */
  private rows(t: Tensor): Float32Array {
    let values = this.host.get(t);
    if (!values) {
      values = this.backend.toFloat32(t);
      this.host.set(t, values);
    }
    return values;
  }
}
