/**
 * Packing of b-bit codes (b ∈ {1, 2, 4, 8}) into bytes, LSB-first, one row at a time.
 *
 * A matrix of codes [rows, cols] becomes bytes [rows, rowBytes] with rowBytes = ceil(cols·b / 8): code (r, c) sits in
 * byte r·rowBytes + ⌊c·b/8⌋ at bit offset (c·b) mod 8, its lowest bit first. b divides 8, so no code straddles two
 * bytes; the padding bits at the end of a row are zero. Each row starting on a byte lets a kernel address a token's
 * codes without knowing the ones before it.
 *
 *   2-bit row [1, 2, 3, 0, 1] → bytes [0b00_11_10_01, 0b000000_01] = [0x39, 0x01]
 */
import { check } from '../errors.js';

export type CodeBits = 1 | 2 | 4 | 8;

export const CODE_BITS: readonly CodeBits[] = [1, 2, 4, 8];

/** Bytes one row of `cols` b-bit codes takes. */
export function packedRowBytes(cols: number, bits: CodeBits): number {
  return Math.ceil((cols * bits) / 8);
}

/**
 * Packs codes [rows, cols] (row-major, each < 2^bits) into bytes [rows, packedRowBytes(cols, bits)].
 *
 *   packCodes(Uint8Array.of(1, 2, 3, 0, 1), 1, 5, 2)  // Uint8Array [0x39, 0x01]
 */
export function packCodes(codes: ArrayLike<number>, rows: number, cols: number, bits: CodeBits): Uint8Array {
  check(codes.length === rows * cols, `packCodes: ${codes.length} codes for a [${rows}, ${cols}] matrix`);
  const rowBytes = packedRowBytes(cols, bits);
  const out = new Uint8Array(rows * rowBytes); // [rows, rowBytes]
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const code = codes[r * cols + c]!;
      check(code >= 0 && code <= mask && Number.isInteger(code), () => `packCodes: code ${code} at (${r}, ${c}) is not a ${bits}-bit code`);
      const bit = c * bits;
      out[r * rowBytes + (bit >> 3)]! |= code << (bit & 7);
    }
  }
  return out;
}

/**
 * Unpacks bytes [rows, packedRowBytes(cols, bits)] back to codes [rows, cols] (row-major).
 *
 *   unpackCodes(Uint8Array.of(0x39, 0x01), 1, 5, 2)  // Uint8Array [1, 2, 3, 0, 1]
 */
export function unpackCodes(bytes: Uint8Array, rows: number, cols: number, bits: CodeBits): Uint8Array {
  const rowBytes = packedRowBytes(cols, bits);
  check(bytes.length === rows * rowBytes, `unpackCodes: ${bytes.length} bytes for [${rows}, ${cols}] ${bits}-bit codes (need ${rows * rowBytes})`);
  const out = new Uint8Array(rows * cols); // [rows, cols]
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const bit = c * bits;
      out[r * cols + c] = (bytes[r * rowBytes + (bit >> 3)]! >> (bit & 7)) & mask;
    }
  }
  return out;
}
