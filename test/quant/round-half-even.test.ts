/** The one rounding rule of src/core/quant: nearest, ties to even (torch.round, CUDA rintf). */
import { describe, expect, it } from 'vitest';
import { roundHalfEven } from '../../src/core/quant/round-half-even.js';

describe('roundHalfEven', () => {
  it('sends ties to the even neighbour, both signs', () => {
    const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, -0], [-1.5, -2], [-2.5, -2], [-3.5, -4], [254.5, 254], [255.5, 256]];
    for (const [x, want] of cases) expect(roundHalfEven(x), `${x}`).toBe(want);
  });

  it('rounds non-ties to the nearest integer', () => {
    const cases: [number, number][] = [[0.49999999999999994, 0], [0.5000000000000001, 1], [2.4, 2], [2.6, 3], [-2.6, -3], [-2.4, -2], [7, 7], [2 ** 53, 2 ** 53]];
    for (const [x, want] of cases) expect(roundHalfEven(x), `${x}`).toBe(want);
  });
});
