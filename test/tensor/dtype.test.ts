/** Float conversions round to nearest even, as PyTorch's casts do, including the edge cases. */
import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/core/tensor/dtype.js';

describe('bf16', () => {
  it('rounds to nearest even and keeps specials', () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(bf16ToF32(f32ToBf16(1 + 2 ** -8))).toBe(1); // halfway: ties to even (down)
    expect(bf16ToF32(f32ToBf16(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6); // halfway: ties to even (up)
    expect(bf16ToF32(f32ToBf16(1 + 2 ** -8 + 2 ** -20))).toBe(1 + 2 ** -7); // past halfway: up
    expect(bf16ToF32(f32ToBf16(-Infinity))).toBe(-Infinity);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
    expect(bf16ToF32(f32ToBf16(3.4e38))).toBe(Infinity); // rounds past the largest bf16
  });

  it('round-trips every bf16 value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits += 7) {
      const v = bf16ToF32(bits);
      if (!Number.isNaN(v)) expect(f32ToBf16(v)).toBe(bits);
    }
  });
});

describe('f16', () => {
  it('rounds to nearest even, handles subnormals and overflow', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f16ToF32(f32ToF16(65504))).toBe(65504);
    expect(f16ToF32(f32ToF16(65520))).toBe(Infinity); // halfway past the largest f16
    expect(f16ToF32(f32ToF16(2 ** -24))).toBe(2 ** -24); // smallest subnormal
    expect(f16ToF32(f32ToF16(2 ** -26))).toBe(0); // below half the smallest subnormal
    expect(f16ToF32(f32ToF16(1 + 2 ** -11))).toBe(1); // tie to even
  });

  it('round-trips every finite f16 value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = f16ToF32(bits);
      if (Number.isFinite(v) && !(v === 0 && bits === 0x8000)) expect(f32ToF16(v)).toBe(bits);
    }
  });
});
