/**
 * One layer's keys and values of one sequence as KIVI holds them (Liu et al., ICML 2024; jy-yuan/KIVI
 * models/llama_kivi.py), on the host: the CPU reference of the KIVI cache.
 *
 *   keys   [T, C] (C = H_kv·D_h, HF layout, after RoPE as KIVI's Llama code quantizes them): the oldest T − (T mod R)
 *          in blocks of R tokens, each quantized per channel over groups of G tokens; the last T mod R exact.
 *   values [T, C]: the oldest max(0, T − R) quantized per token over groups of G channels; the last min(T, R) exact.
 *
 * `push` only appends to the exact tails; `settle` flushes them to the split quant/kivi.ts gives for T. The cache
 * settles after a decode step's attention, as the reference does: the step's query sees its own key exact even when
 * it completes a block of R, and R + 1 exact values (the reference concatenates, attends, then flushes).
 * Quantizing a block of R keys as R/G groups, or T − R values at once, equals flushing them one block or one token at
 * a time (groups never straddle a flush), so the state depends on T alone, however the tokens came.
 */
import { type AffineGroups, dequantizeAffine, quantizeAffine } from '../quant/affine-groups.js';
import type { KiviPart } from '../quant/kivi.js';

/** KIVI's code widths: KIVI-2 and KIVI-1. */
export type KiviBits = 1 | 2;

export interface KiviOptions {
  /** code bits: 2 or 1 (KIVI-2, KIVI-1) */
  bits: KiviBits;
  /** G: tokens per key group (per channel), channels per value group (per token) */
  group: number;
  /** R: keys flush R tokens at once; values keep the last R exact */
  residual: number;
}

/** Bytes of f16 that KIVI stores each scale and zero in. */
const F16_BYTES = 2;

/**
 * KIVI's storage of one layer and sequence.
 *
 *   const rows = new KiviRows(256, { bits: 2, group: 32, residual: 128 });
 *   rows.push(k, v, 200); rows.settle();           // k, v: [200, 256]
 *   rows.held('keys')                              // { quantized: 128, exact: 72 }
 *   const { keys, values } = rows.dequantized();   // [200, 256] each: what attention reads
 */
export class KiviRows {
  private readonly keyBlocks: AffineGroups[] = []; // each [R, C], axis 'channel'
  private readonly valueBlocks: AffineGroups[] = []; // each [n, C], axis 'token'
  private keyTail: Float32Array[] = []; // rows [C], exact, oldest first
  private valueTail: Float32Array[] = []; // rows [C], exact, oldest first

  constructor(
    readonly width: number,
    readonly o: KiviOptions,
  ) {}

  /** Tokens held (T). */
  get tokens(): number {
    return this.held('keys').quantized + this.keyTail.length;
  }

  /** How many of the held keys or values are quantized and how many exact, now. */
  held(part: KiviPart): { quantized: number; exact: number } {
    const blocks = part === 'keys' ? this.keyBlocks : this.valueBlocks;
    const tail = part === 'keys' ? this.keyTail : this.valueTail;
    return { quantized: blocks.reduce((n, b) => n + b.rows, 0), exact: tail.length };
  }

  /** Appends rows [n, C] of keys and values to the exact tails (copies them). */
  push(k: Float32Array, v: Float32Array, n: number, offset = 0): void {
    const C = this.width;
    for (let i = offset; i < offset + n; i++) {
      this.keyTail.push(k.slice(i * C, (i + 1) * C));
      this.valueTail.push(v.slice(i * C, (i + 1) * C));
    }
  }

  /** Flushes the tails to kiviSplit(T): whole blocks of R keys, and every value older than the last R. */
  settle(): void {
    const { bits, group, residual: R } = this.o;
    const C = this.width;
    while (this.keyTail.length >= R) {
      const block = this.keyTail.splice(0, R);
      this.keyBlocks.push(quantizeAffine(concatRows(block, C), R, C, 'channel', { bits, group }));
    }
    const old = this.valueTail.length - R;
    if (old > 0) {
      const rows = this.valueTail.splice(0, old);
      this.valueBlocks.push(quantizeAffine(concatRows(rows, C), old, C, 'token', { bits, group }));
    }
  }

  /** Keys and values [T, C] as attention reads them: the quantized prefix dequantized, then the exact tail. */
  dequantized(): { keys: Float32Array; values: Float32Array } {
    return { keys: this.read(this.keyBlocks, this.keyTail), values: this.read(this.valueBlocks, this.valueTail) };
  }

  /**
   * Bytes as the format stores them: packed codes, f16 scales and zeros, and the exact tails at `exactBytes` per
   * element (the activation dtype's width).
   */
  bytes(exactBytes: number): number {
    const blocks = [...this.keyBlocks, ...this.valueBlocks];
    const quantized = blocks.reduce((n, b) => n + b.codes.length + (b.scales.length + b.zeros.length) * F16_BYTES, 0);
    return quantized + (this.keyTail.length + this.valueTail.length) * this.width * exactBytes;
  }

  private read(blocks: readonly AffineGroups[], tail: readonly Float32Array[]): Float32Array {
    const C = this.width;
    const quantized = blocks.reduce((n, b) => n + b.rows, 0);
    const out = new Float32Array((quantized + tail.length) * C); // [T, C]
    let row = 0;
    for (const b of blocks) {
      out.set(dequantizeAffine(b), row * C);
      row += b.rows;
    }
    for (const r of tail) out.set(r, row++ * C);
    return out;
  }
}

/** Rows [C] stacked into [n, C]. */
function concatRows(rows: readonly Float32Array[], C: number): Float32Array {
  const out = new Float32Array(rows.length * C); // [n, C]
  rows.forEach((r, i) => out.set(r, i * C));
  return out;
}
