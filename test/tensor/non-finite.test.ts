/** The bit test of findNonFinite agrees with Number.isFinite on the decoded value, for every 16-bit pattern. */
import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32 } from '../../src/core/tensor/dtype.js';
import { findNonFinite } from '../../src/core/tensor/non-finite.js';

const every16 = Uint16Array.from({ length: 0x10000 }, (_, i) => i);

/** The plain-loop reference: decode, then ask Number.isFinite. */
function reference(values: ArrayLike<number>): { count: number; first: number } {
  let count = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    if (Number.isFinite(values[i])) continue;
    if (count++ === 0) first = i;
  }
  return { count, first };
}

describe('findNonFinite', () => {
  it('bf16: every bit pattern, as its decoded value says', () => {
    expect(findNonFinite(every16, 'bf16')).toEqual(reference(Array.from(every16, bf16ToF32)));
  });

  it('f16: every bit pattern, as its decoded value says', () => {
    expect(findNonFinite(every16, 'f16')).toEqual(reference(Array.from(every16, f16ToF32)));
  });

  it('f32: NaN, both infinities, and the largest finite values', () => {
    const x = Float32Array.of(0, -0, 3.4028234663852886e38, -3.4028234663852886e38, 1e-45, NaN, Infinity, -Infinity, 1);
    expect(findNonFinite(x, 'f32')).toEqual({ count: 3, first: 5 });
  });

  it('raw bytes at an unaligned offset (as a safetensors tensor may sit)', () => {
    const bytes = new Uint8Array(1 + 8);
    new DataView(bytes.buffer).setFloat32(1 + 4, NaN, true);
    expect(findNonFinite(bytes.subarray(1), 'f32')).toEqual({ count: 1, first: 1 });
  });

  it('an odd 16-bit element after the last whole word, and hits in both halves of a word', () => {
    expect(findNonFinite(Uint16Array.of(0x3f80, 0x3f80, 0x7c00), 'f16')).toEqual({ count: 1, first: 2 });
    expect(findNonFinite(Uint16Array.of(0x3f80, 0xff80, 0x7f81, 0x0000), 'bf16')).toEqual({ count: 2, first: 1 });
  });

  it('finite data: none found', () => {
    expect(findNonFinite(new Float32Array(1000).fill(65504), 'f32')).toEqual({ count: 0, first: -1 });
  });
});
