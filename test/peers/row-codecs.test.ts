/**
 * The peer row formats (int-rows.ts, fp8-rows.ts): round trips within the quant/ bounds, a token's row independent of
 * the tokens encoded with it, and row sizes equal to the accounting's average bits (INT4 g64 4.5, INT2 g32 3, FP8 8.25).
 */
import { describe, expect, it } from 'vitest';
import { averageBits, fp8BytesPerToken, intBytesPerToken } from '../../src/core/memory/cache-accounting.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { fp8RowCodec } from '../../src/core/peers/fp8-rows.js';
import { intRowCodec } from '../../src/core/peers/int-rows.js';
import { fp8Excess, intExcess } from './bounds.js';

const [H, D] = [2, 64];
const W = H * D;

/** x: [T, W] normal values with an outlier channel per head, as keys have. */
function rows(T: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed);
  return Float32Array.from({ length: T * W }, (_, i) => rng.normal() * (i % D === 3 ? 20 : 1));
}

describe.each([
  { bits: 4 as const, group: 64 },
  { bits: 4 as const, group: 32 },
  { bits: 2 as const, group: 64 },
  { bits: 2 as const, group: 32 },
])('int$bits g$group rows', ({ bits, group }) => {
  const codec = intRowCodec(bits, group, H, D);

  it('round-trips within the affine bound', () => {
    const x = rows(9, bits * group);
    const out = new Uint8Array(9 * codec.rowBytes);
    codec.encode(x, 9, out, 0);
    expect(intExcess(x, codec.decode(out, 0, 9), bits, group)).toBeLessThanOrEqual(1);
  });

  it('encodes each token alone: a block equals its rows one at a time', () => {
    const x = rows(5, 7);
    const block = new Uint8Array(5 * codec.rowBytes);
    const single = new Uint8Array(5 * codec.rowBytes);
    codec.encode(x, 5, block, 0);
    for (let t = 0; t < 5; t++) codec.encode(x.subarray(t * W), 1, single, t);
    expect(single).toEqual(block);
    expect(codec.decode(block, 2, 3)).toEqual(codec.decode(block, 0, 5).subarray(2 * W));
  });

  it('takes the bytes of the accounting: bits + 32/group average bits', () => {
    const g = { numLayers: 1, kvHeads: H, headDim: D };
    expect(2 * codec.rowBytes).toBe(intBytesPerToken(g, bits, group));
    expect(averageBits(g, intBytesPerToken(g, bits, group))).toBe(bits + 32 / group);
  });
});

describe('fp8 rows', () => {
  const codec = fp8RowCodec(H, D);

  it('round-trips within the e4m3 bound, a scale per token and head', () => {
    const x = rows(9, 3);
    x.fill(0, 2 * W, 2 * W + D); // an all-zero head: scale 0, x̂ = 0
    const out = new Uint8Array(9 * codec.rowBytes);
    codec.encode(x, 9, out, 0);
    const xh = codec.decode(out, 0, 9);
    expect(fp8Excess(x, xh, D)).toBeLessThanOrEqual(1);
    expect(xh.subarray(2 * W, 2 * W + D).every((v) => v === 0)).toBe(true);
  });

  it('is not saturated by a later outlier: each token has its own scale', () => {
    const x = rows(2, 4);
    x[W] = 1e4; // token 1's outlier leaves token 0 as it was
    const out = new Uint8Array(2 * codec.rowBytes);
    codec.encode(x, 2, out, 0);
    const alone = new Uint8Array(codec.rowBytes);
    codec.encode(x, 1, alone, 0);
    expect(out.subarray(0, codec.rowBytes)).toEqual(alone);
  });

  it('takes the bytes of the accounting: 8 + 32/D_h average bits', () => {
    const llama = { numLayers: 32, kvHeads: 8, headDim: 128 };
    expect(2 * fp8RowCodec(8, 128).rowBytes).toBe(fp8BytesPerToken(llama));
    expect(averageBits(llama, fp8BytesPerToken(llama))).toBe(8.25);
    expect(averageBits(llama, intBytesPerToken(llama, 4, 64))).toBe(4.5); // the INT4 g64
  });
});

describe('int rows refuse', () => {
  it('a group that does not divide D_h', () => {
    expect(() => intRowCodec(4, 64, 2, 32)).toThrow(/group 64 does not divide the head dimension 32/);
  });
});
