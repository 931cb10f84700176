/**
 * Bit packing of the compressed cache.
 *
 * Key codes: 12-bit codes (N_h = 64: c = 64A + B), two codes in three bytes, little-endian:
 *   bytes[3m..3m+2] = c₀ | c₁ << 12 (24 bits); an odd count leaves the last code in the low 12 bits of two bytes.
 * Value bits: N_c bits per token, LSB-first (bit i of byte m is bit 8m + i), as the reference's §6.5 packing.
 */

/** Bytes that `count` 12-bit codes take. */
export function packedCodeBytes(count: number): number {
  return Math.ceil((count * 12) / 8);
}

export function packCodes12(codes: ArrayLike<number>, out = new Uint8Array(packedCodeBytes(codes.length)), offset = 0): Uint8Array {
  for (let i = 0, o = offset; i < codes.length; i += 2, o += 3) {
    const a = codes[i]! & 0xfff;
    const b = i + 1 < codes.length ? codes[i + 1]! & 0xfff : 0;
    out[o] = a & 0xff;
    out[o + 1] = (a >> 8) | ((b & 0xf) << 4);
    if (i + 1 < codes.length) out[o + 2] = b >> 4;
  }
  return out;
}

export function unpackCodes12(bytes: Uint8Array, count: number, offset = 0, out = new Uint16Array(count)): Uint16Array {
  for (let i = 0, o = offset; i < count; i += 2, o += 3) {
    out[i] = bytes[o]! | ((bytes[o + 1]! & 0x0f) << 8);
    if (i + 1 < count) out[i + 1] = (bytes[o + 1]! >> 4) | (bytes[o + 2]! << 4);
  }
  return out;
}

/** 0/1 values → LSB-first bytes. */
export function packBits(bits: ArrayLike<number>, out = new Uint8Array(Math.ceil(bits.length / 8)), offset = 0): Uint8Array {
  for (let m = 0; m < Math.ceil(bits.length / 8); m++) {
    let byte = 0;
    for (let i = 0; i < 8 && 8 * m + i < bits.length; i++) if (bits[8 * m + i]) byte |= 1 << i;
    out[offset + m] = byte;
  }
  return out;
}

export function unpackBits(bytes: Uint8Array, count: number, offset = 0, out = new Float32Array(count)): Float32Array {
  for (let i = 0; i < count; i++) out[i] = (bytes[offset + (i >> 3)]! >> (i & 7)) & 1;
  return out;
}
