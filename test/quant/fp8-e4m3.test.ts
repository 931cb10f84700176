/**
 * FP8 e4m3fn: every code against its documented value, the encoder against a brute-force nearest search over all
 * finite codes, and per-head round trips within the format's bound. The bound: with y = x/scale and
 * e = max(⌊log2|y|⌋, −6), the codes around y are 2^(e−3) apart (3 mantissa bits; subnormals share e = −6), so the
 * nearest is within half of that, |y − ŷ| ≤ 2^(e−4): relative ≤ 2^−4 for normal y, absolute ≤ 2^−10 for subnormal y.
 * In x: |x − x̂| ≤ 2^(e−4)·scale, with e taken from the f32 quotient the encoder sees, plus f32 roundings of x/scale
 * and of decode·scale (each ≤ 2^−24 relative), covered by 2^−23·(|x| + |x̂|).
 */
import { describe, expect, it } from 'vitest';
import { CommvqError } from '../../src/core/errors.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { dequantizeFp8PerHead, e4m3ToF32, f32ToE4m3, quantizeFp8PerHead } from '../../src/core/quant/fp8-e4m3.js';

/** The finite codes 0x00..0x7e with their values, ascending (the positive half; negatives mirror with 0x80). */
const POSITIVE = Array.from({ length: 0x7f }, (_, c) => ({ code: c, value: e4m3ToF32(c) }));

/** Nearest finite code by search, ties to the even code, above 448 saturated. */
function bruteForce(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  let best = POSITIVE[0]!;
  for (const c of POSITIVE) {
    const d = Math.abs(c.value - a);
    const bd = Math.abs(best.value - a);
    if (d < bd || (d === bd && (c.code & 1) === 0)) best = c;
  }
  return sign | best.code;
}

describe('e4m3 codes', () => {
  it('decode to the documented values', () => {
    const anchors: [number, number][] = [
      [0x00, 0], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6], [0x09, 1.125 * 2 ** -6], [0x30, 0.5], [0x38, 1],
      [0x39, 1.125], [0x3f, 1.875], [0x40, 2], [0x77, 240], [0x78, 256], [0x7d, 416], [0x7e, 448],
      [0x81, -(2 ** -9)], [0xb8, -1], [0xfe, -448],
    ];
    for (const [code, v] of anchors) expect(e4m3ToF32(code), code.toString(16)).toBe(v);
    expect(Object.is(e4m3ToF32(0x80), -0)).toBe(true);
    expect(e4m3ToF32(0x7f)).toBeNaN();
    expect(e4m3ToF32(0xff)).toBeNaN();
  });

  it('every code: the positive half ascends strictly, the negative half mirrors it, 254 finite values', () => {
    for (let c = 1; c < 0x7f; c++) expect(POSITIVE[c]!.value).toBeGreaterThan(POSITIVE[c - 1]!.value);
    for (let c = 0; c < 0x7f; c++) expect(e4m3ToF32(c | 0x80)).toBe(-e4m3ToF32(c));
    expect(Array.from({ length: 256 }, (_, c) => e4m3ToF32(c)).filter(Number.isFinite).length).toBe(254);
  });

  it('every finite code encodes back to itself, −0 included', () => {
    for (let c = 0; c < 256; c++) if (c !== 0x7f && c !== 0xff) expect(f32ToE4m3(e4m3ToF32(c)), c.toString(16)).toBe(c);
  });
});

describe('f32ToE4m3', () => {
  it('equals the brute-force nearest search at every midpoint, just off it, and on random values', () => {
    const probes: number[] = [];
    for (let c = 0; c + 1 < POSITIVE.length; c++) {
      const mid = (POSITIVE[c]!.value + POSITIVE[c + 1]!.value) / 2; // exact in f32: one more bit than e4m3
      probes.push(mid, mid * (1 + 2 ** -20), mid * (1 - 2 ** -20));
    }
    probes.push(448, 449, 463.9, 464, 465, 1e6, 2 ** -10, 2 ** -11, 2 ** -10 * (1 + 2 ** -20), 3 * 2 ** -10);
    const rng = new SeededRandom(8);
    for (let i = 0; i < 20000; i++) probes.push(Math.fround(2 ** (-14 + 24 * rng.uniform())));
    for (const p of probes) {
      expect(f32ToE4m3(p), `${p}`).toBe(bruteForce(p));
      expect(f32ToE4m3(-p), `${-p}`).toBe(bruteForce(-p));
    }
  });

  it('rounds ties to the even mantissa, the subnormal boundary included', () => {
    expect(f32ToE4m3(1.0625)).toBe(0x38); // between 1 (m 0) and 1.125 (m 1): even
    expect(f32ToE4m3(1.1875)).toBe(0x3a); // between 1.125 (m 1) and 1.25 (m 2): even
    expect(f32ToE4m3(15 * 2 ** -10)).toBe(0x08); // between 7·2^-9 (0x07) and 2^-6 (0x08): even, carries into the exponent
    expect(f32ToE4m3(2 ** -10)).toBe(0x00); // half the smallest subnormal: to zero (even)
    expect(f32ToE4m3(1.875 + 0.0625)).toBe(0x40); // between 1.875 and 2: carries into the exponent
  });

  it('saturates finite overflow and infinities to ±448; NaN is 0x7f; −0 keeps its sign', () => {
    expect(f32ToE4m3(464)).toBe(0x7e); // would be a tie to 480 (the NaN code's place) without saturation
    expect(f32ToE4m3(3.4e38)).toBe(0x7e);
    expect(f32ToE4m3(Infinity)).toBe(0x7e);
    expect(f32ToE4m3(-Infinity)).toBe(0xfe);
    expect(f32ToE4m3(NaN)).toBe(0x7f);
    expect(f32ToE4m3(-0)).toBe(0x80);
    expect(f32ToE4m3(-(2 ** -12))).toBe(0x80); // underflow keeps the sign
  });
});

describe('quantizeFp8PerHead', () => {
  it('scales each head by its own amax over the tokens given: x [T, H·D]', () => {
    const x = Float32Array.of(448, -224, 1, 0.5, 2, 1, 0.25, -0.5); // [2, 2·2]
    const g = quantizeFp8PerHead(x, 2, 2, 2);
    expect([...g.scales]).toEqual([1, Math.fround(1 / 448)]);
    expect([...g.codes.slice(0, 2)]).toEqual([0x7e, 0xf6]); // 448, −224 at scale 1
    expect(dequantizeFp8PerHead(g)).toEqual(x);
  });

  it('gives an all-zero head scale 0 and codes 0', () => {
    const g = quantizeFp8PerHead(Float32Array.of(0, 0, 3, -1), 1, 2, 2);
    expect(g.scales[0]).toBe(0);
    expect([...g.codes.slice(0, 2)]).toEqual([0, 0]);
    expect([...dequantizeFp8PerHead(g).slice(0, 2)]).toEqual([0, 0]);
  });

  it('refuses non-finite input, naming the function and the element', () => {
    expect(() => quantizeFp8PerHead(Float32Array.of(0, 1, NaN, 2), 2, 1, 2)).toThrow(CommvqError);
    expect(() => quantizeFp8PerHead(Float32Array.of(0, 1, NaN, 2), 2, 1, 2)).toThrow(/^quantizeFp8PerHead: x\[1, 0\] is NaN$/);
    expect(() => quantizeFp8PerHead(new Float32Array(5), 1, 2, 2)).toThrow(/5 values for \[1, 2·2\]/);
  });

  it('round-trips within 2^(e−4)·scale, heads of very different ranges, subnormals included', () => {
    const rng = new SeededRandom(9);
    const [T, H, D] = [64, 4, 32];
    const range = [1e-3, 1, 30, 2e3]; // per head
    const x = Float32Array.from({ length: T * H * D }, (_, i) => range[Math.floor((i % (H * D)) / D)]! * rng.normal() * (rng.uniform() < 0.1 ? 1e-3 : 1));
    const g = quantizeFp8PerHead(x, T, H, D);
    const xh = dequantizeFp8PerHead(g);
    let subnormals = 0;
    let worstRelNormal = 0;
    for (let i = 0; i < x.length; i++) {
      const s = g.scales[Math.floor((i % (H * D)) / D)]!;
      const y = Math.fround(x[i]! / s);
      const e = Math.max(Math.floor(Math.log2(Math.abs(y))), -6);
      if (Math.abs(y) < 2 ** -6) subnormals++;
      else worstRelNormal = Math.max(worstRelNormal, Math.abs(x[i]! - xh[i]!) / Math.abs(x[i]!));
      const bound = 2 ** (e - 4) * s + 2 ** -23 * (Math.abs(x[i]!) + Math.abs(xh[i]!));
      const err = Math.abs(x[i]! - xh[i]!);
      if (!(err <= bound)) throw new Error(`x[${i}] = ${x[i]} → ${xh[i]}: |err| ${err} > ${bound} (scale ${s})`);
    }
    expect(subnormals, 'the test reaches subnormal codes').toBeGreaterThan(10);
    expect(worstRelNormal, 'the relative bound 2^-4 is nearly reached').toBeGreaterThan(2 ** -4 * 0.8);
    expect(worstRelNormal).toBeLessThanOrEqual(2 ** -4 * (1 + 2 ** -20));
  });
});
