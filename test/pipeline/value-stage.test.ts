/**
 * The value stage's line says plainly when a short run leaves the encoder above the plain quantizer (issue 17, item
 * 10: the demo's 2-bit values, 16 steps, 0.63 against the quantizer's 0.21), and says nothing when it beats it.
 */
import { describe, expect, it } from 'vitest';
import { valueBudgetNote } from '../../src/core/pipeline/value-stage.js';

describe('value stage: the budget note', () => {
  it('names the quantizer, the steps and the remedy when the encoder ends above it', () => {
    expect(valueBudgetNote(0.632, 0.207, 2, 16)).toBe(
      ' — above the plain 2-bit quantizer: 16 steps are too few for the encoder, trained from a random start, to pass it; more value steps close the gap',
    );
  });

  it('is empty when the encoder beats the quantizer (the demo’s 1 bit: 0.75 against 2.72)', () => {
    expect(valueBudgetNote(0.753, 2.723, 1, 16)).toBe('');
    expect(valueBudgetNote(0.2, 0.2, 2, 16)).toBe('');
  });
});
