/** Bit-for-bit equality of float arrays, fast at any size, reporting the first differing element. */
import { expect } from 'vitest';

/** Expects `actual` to hold exactly the bits of `expected` (NaN payloads and signed zeros included). */
export function expectSameBits(actual: Float32Array | undefined, expected: Float32Array | undefined, what: string): void {
  expect(actual, `${what}: missing`).toBeDefined();
  expect(expected, `${what}: nothing to compare with`).toBeDefined();
  const a = Buffer.from(actual!.buffer, actual!.byteOffset, actual!.byteLength);
  const b = Buffer.from(expected!.buffer, expected!.byteOffset, expected!.byteLength);
  if (a.equals(b)) return;
  const n = Math.min(actual!.length, expected!.length);
  let i = 0;
  while (i < n && Object.is(actual![i], expected![i])) i++;
  expect.fail(`${what}: ${actual!.length} vs ${expected!.length} values; first difference at [${i}]: ${actual![i]} vs ${expected![i]}`);
}
