/** b-bit codes packed LSB-first, each row starting on a byte: small layouts written out by hand, then round trips. */
import { describe, expect, it } from 'vitest';
import { CommvqError } from '../../src/core/errors.js';
import { CODE_BITS, packCodes, packedRowBytes, unpackCodes } from '../../src/core/quant/pack-codes.js';

describe('packCodes layout', () => {
  it('puts code c at bit c·b of its row, lowest bit first', () => {
    // 1-bit: bits 0..7 of byte 0 are codes 0..7 → 0b1000_1101; code 8 is bit 0 of byte 1
    expect([...packCodes([1, 0, 1, 1, 0, 0, 0, 1, 1], 1, 9, 1)]).toEqual([0x8d, 0x01]);
    // 2-bit: [1, 2, 3, 0 | 1] → 0b00_11_10_01, 0b000000_01
    expect([...packCodes([1, 2, 3, 0, 1], 1, 5, 2)]).toEqual([0x39, 0x01]);
    // 4-bit: [0xa, 0x3 | 0xf] → 0x3a, 0x0f (low nibble first)
    expect([...packCodes([0xa, 0x3, 0xf], 1, 3, 4)]).toEqual([0x3a, 0x0f]);
    expect([...packCodes([7, 255], 1, 2, 8)]).toEqual([7, 255]);
  });

  it('starts each row on a byte, padding the row end with zero bits', () => {
    // [2, 3] 2-bit codes: 6 bits a row, one byte each
    expect(packedRowBytes(3, 2)).toBe(1);
    expect([...packCodes([1, 2, 3, 3, 0, 1], 2, 3, 2)]).toEqual([0x39, 0x13]);
    expect([...unpackCodes(Uint8Array.of(0x39, 0x13), 2, 3, 2)]).toEqual([1, 2, 3, 3, 0, 1]);
  });

  it('reads as KIVI packs into int32 words: element i at bits i·b of the little-endian word', () => {
    const codes = Array.from({ length: 16 }, (_, i) => i % 4); // one 32-bit word of 2-bit codes
    const word = new Uint32Array(packCodes(codes, 1, 16, 2).buffer)[0]!;
    let want = 0;
    for (let i = 0; i < 16; i++) want |= codes[i]! << (2 * i);
    expect(word).toBe(want >>> 0);
  });

  it('round-trips random codes of every width and odd shapes', () => {
    for (const bits of CODE_BITS) {
      for (const [rows, cols] of [[1, 1], [3, 7], [5, 33], [2, 64]] as const) {
        const codes = Uint8Array.from({ length: rows * cols }, (_, i) => (i * 2654435761) % 2 ** bits);
        const bytes = packCodes(codes, rows, cols, bits);
        expect(bytes.length).toBe(rows * Math.ceil((cols * bits) / 8));
        expect(unpackCodes(bytes, rows, cols, bits)).toEqual(codes);
      }
    }
  });

  it('refuses a code that does not fit, and a wrong length', () => {
    expect(() => packCodes([4], 1, 1, 2)).toThrow(CommvqError);
    expect(() => packCodes([4], 1, 1, 2)).toThrow(/packCodes: code 4 at \(0, 0\) is not a 2-bit code/);
    expect(() => packCodes([1, 2], 1, 3, 2)).toThrow(/2 codes for a \[1, 3\] matrix/);
    expect(() => unpackCodes(new Uint8Array(3), 2, 3, 2)).toThrow(/unpackCodes: 3 bytes/);
  });
});
