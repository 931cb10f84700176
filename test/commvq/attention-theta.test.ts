import { describe, expect, it } from 'vitest';
import { attentionStages, attentionTheta } from '../../src/core/commvq/attention-theta.js';
import { roundF16 as half } from '../../src/core/tensor/dtype.js';

describe('attentionTheta: θ as the key kernel reads it', () => {
  const [R, G, P] = [3, 2, 4];
  const theta = Float32Array.from({ length: R * G * 128 * P }, (_, i) => Math.fround(Math.sin(i) * 0.3));
  const out = attentionTheta(theta, R, G, P);

  it('fills an odd R’s free slot with stage 0’s remainder: S = R + R mod 2', () => {
    expect([1, 2, 11, 21].map(attentionStages)).toEqual([2, 2, 12, 22]);
    expect(out.length).toBe(attentionStages(R) * G * 128 * P);
  });

  it('puts X_i and Y_i of codeword i side by side per pair: [S, G, 64, P, 2]', () => {
    for (const [r, g, i, j] of [[0, 0, 0, 0], [2, 1, 63, 3], [1, 0, 17, 2]] as const) {
      const src = ((r * G + g) * 128 + 2 * i) * P + j; // θ[r, g, 2i, j] = X_i; row 2i + 1 is Y_i
      const at = (((r * G + g) * 64 + i) * P + j) * 2;
      expect([out[at], out[at + 1]]).toEqual([theta[src], theta[src + P]]);
    }
  });

  // f16(x) is within 2^-11·|x|, so the remainder is ≤ 2^-11·|x| and its own f16 within 2^-11 of that, or within
  // 2^-25 absolute where it is subnormal (below 2^-14): together ≤ 2^-22·|x| + 2^-25
  it('stage R holds θ − f16(θ) of stage 0, so f16(stage 0) + f16(stage R) carries stage 0 to ~2^-22', () => {
    const stage = G * 128 * P;
    for (let k = 0; k < stage; k++) {
      const x = out[k]!;
      expect(out[R * stage + k]).toBe(Math.fround(x - half(x)));
      expect(Math.abs(half(x) + half(out[R * stage + k]!) - x)).toBeLessThanOrEqual(2 ** -22 * Math.abs(x) + 2 ** -25);
    }
  });

  it('refuses θ of the wrong size, naming the shape', () => {
    expect(() => attentionTheta(theta.subarray(1), R, G, P)).toThrow(/\[3, 2, 128, 4\] needs 3072/);
  });
});
