/**
 * The int4/int2 exact part follows HF QuantizedLayer.update: a replay of its bookkeeping (the prompt quantized whole at
 * the first update; then `self.keys` grows until `len + 1 >= residual_length` flushes it with the step's token) gives
 * the same exact count after every step as exactAfterStep.
 */
import { describe, expect, it } from 'vitest';
import { exactAfterStep } from '../../src/core/peers/flush-rule.js';

/** HF's bookkeeping, transcribed: the length of `self.keys` after each update of `steps` tokens (the first a prompt). */
function hfExact(steps: number[], residual: number): number[] {
  let keys = -1; // -1: not initialized
  return steps.map((t) => {
    if (keys < 0) keys = 0; // first update: everything to _quantized_keys, self.keys empty
    else if (keys + 1 >= residual) keys = 0;
    else keys += t;
    return keys;
  });
}

describe('exactAfterStep', () => {
  it.each([1, 2, 8, 128])('matches HF over a prompt and 300 decode steps, residual %i', (R) => {
    for (const prompt of [1, R - 1, R, R + 32].filter((p) => p > 0)) {
      const steps = [prompt, ...new Array<number>(300).fill(1)];
      let exact = 0;
      const ours = steps.map((t, i) => (exact = exactAfterStep(exact, t, i === 0, R)));
      expect(ours, `prompt ${prompt}`).toEqual(hfExact(steps, R));
      expect(Math.max(...ours)).toBe(Math.max(R - 1, 0)); // never more than R − 1 exact
    }
  });

  it('quantizes a prompt whole and flushes R tokens at once', () => {
    expect(exactAfterStep(0, 20, true, 128)).toBe(0);
    expect(exactAfterStep(126, 1, false, 128)).toBe(127);
    expect(exactAfterStep(127, 1, false, 128)).toBe(0);
    expect(exactAfterStep(5, 1, false, 0)).toBe(0);
  });
});
