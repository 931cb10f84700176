/** The Python/NumPy behaviour the scorers depend on: whitespace, rounding, means, ints. */
import { describe, expect, it } from 'vitest';
import { npMean, npRound, pyCollapse, pyInt, pyLstrip, pyRound, pySplit, pyStrip } from '../../src/core/eval/py.js';

describe('Python string helpers', () => {
  it('split() and strip() use Python whitespace (NBSP, \\x1c..\\x1f, ideographic space; not U+FEFF)', () => {
    expect(pySplit(' a\u00a0b\x1cc\u3000d\n')).toEqual(['a', 'b', 'c', 'd']);
    expect(pySplit('a\ufeffb')).toEqual(['a\ufeffb']);
    expect(pyStrip('\x1f\u2028 x y \u00a0')).toBe('x y');
    expect(pyCollapse('  the\t\tcat \n sat ')).toBe('the cat sat');
    expect(pyLstrip('\n\n x\n', '\n')).toBe(' x\n');
  });

  it('int() accepts a sign, underscores between digits and non-ASCII decimal digits; rejects the rest', () => {
    expect(pyInt(' -12 ')).toBe(-12);
    expect(pyInt('1_000')).toBe(1000);
    expect(pyInt('٣٤')).toBe(34); // Arabic-Indic digits
    expect(pyInt('3.5')).toBeUndefined();
    expect(pyInt('1__0')).toBeUndefined();
    expect(pyInt('')).toBeUndefined();
  });
});

describe('rounding', () => {
  it('round(x, 2) rounds the exact binary value, ties to even', () => {
    expect(pyRound(0.125, 2)).toBe(0.12); // exact tie → even
    expect(pyRound(0.375, 2)).toBe(0.38); // exact tie → even
    expect(pyRound(2.675, 2)).toBe(2.67); // 2.67499999… in binary
    expect(pyRound(1.005, 2)).toBe(1); // 1.00499999…
    expect(pyRound(33.333333333333336, 2)).toBe(33.33);
    expect(pyRound(-0.125, 2)).toBe(-0.12);
  });

  it("NumPy's round is rint(x·100)/100, which differs from Python's on 28.395", () => {
    // 28.395 is 28.39499999999999957… : Python rounds down; 28.395*100 = 2839.5 exactly in float → rint → 2840
    expect(pyRound(28.395, 2)).toBe(28.39);
    expect(npRound(28.395, 2)).toBe(28.4);
    expect(npRound(0.125, 2)).toBe(0.12);
  });

  it('np.mean sums pairwise in blocks of 8 from 8 elements on', () => {
    // 1e16 + 1 + 1 … : a left-to-right sum loses each 1, the 8-way unrolled sum keeps them in separate lanes
    const a = [1e16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    let seq = 0;
    for (const x of a) seq += x;
    expect(seq).toBe(1e16);
    // lanes: r0 = 1e16 (+1 lost), r1..r7 = 2 each; ((r0+r1) + (r2+r3)) + ((r4+r5) + (r6+r7)) = (1e16+2 + 4) + 8
    expect(npMean(a) * a.length).toBe(1e16 + 14);
    expect(npMean([0.1, 0.2, 0.3])).toBe((0.1 + 0.2 + 0.3) / 3); // under 8: plain sum
    expect(Number.isNaN(npMean([]))).toBe(true);
  });
});
