/**
 * The rules of the CommVQ cache, written once in commvq-rule.ts: where a block starts, what a query sees, what a step
 * leaves compressed (decoding rule and the reference's faithful prefill), exact slots, the query blocks of a prompt
 * chunk, block-aligned encoding ranges and the noise stream of a block.
 */
import { describe, expect, it } from 'vitest';
import { CommvqRule } from '../../src/core/commvq/commvq-rule.js';

describe('CommvqRule', () => {
  const rule = new CommvqRule(8, 2); // W = 8, 2 sinks: blocks start at 2, 10, 18, ...

  it('puts each position in its block; a sink is its own and sees nothing compressed', () => {
    expect([0, 1, 2, 9, 10, 17, 18].map((p) => rule.blockStart(p))).toEqual([2, 2, 2, 2, 10, 10, 18]);
    expect([0, 9, 10, 25, 26].map((p) => rule.visibleAt(p))).toEqual([0, 0, 8, 16, 24]);
  });

  it('leaves the block of the last token exact under the decoding rule, and compresses whole blocks in a faithful prefill', () => {
    expect([0, 1, 10, 11, 18].map((end) => rule.compressedAfter(end, 'rule'))).toEqual([0, 0, 0, 8, 8]);
    expect([0, 1, 10, 11, 18].map((end) => rule.compressedAfter(end, 'faithful'))).toEqual([0, 0, 8, 8, 16]);
    expect(new CommvqRule(128, 0).compressedAfter(256, 'faithful')).toBe(256); // the reference's Nq = ⌊Lp/128⌋·128
  });

  it('keeps sinks at their positions and the window after them', () => {
    expect([0, 1, 10, 12, 17].map((p) => rule.slot(p, 8))).toEqual([0, 1, 2, 4, 9]);
    expect(rule.exactRows).toBe(10);
    expect(rule.position(0)).toBe(2);
  });

  it('splits a prompt chunk into query blocks that share what they see', () => {
    expect(rule.queryBlocks(0, 13)).toEqual([
      { from: 0, to: 2, visible: 0 },
      { from: 2, to: 10, visible: 0 },
      { from: 10, to: 13, visible: 8 },
    ]);
    expect(rule.queryBlocks(13, 30)).toEqual([
      { from: 13, to: 18, visible: 8 },
      { from: 18, to: 26, visible: 16 },
      { from: 26, to: 30, visible: 24 },
    ]);
  });

  it('encodes in whole blocks, each with its own noise stream per layer, the same for a seed', () => {
    expect(rule.blocksOf(8, 24)).toEqual([{ from: 8, to: 16 }, { from: 16, to: 24 }]);
    expect(rule.noise('argmax', 3, 8)).toBe('argmax');
    expect(rule.noise({ gumbelSeed: 7 }, 3, 8)).toEqual({ seed: 7, stream: (3 << 20) ^ 8 });
    expect(rule.noise({ gumbelSeed: 7 }, 3, 16)).not.toEqual(rule.noise({ gumbelSeed: 7 }, 3, 8));
  });

  it('refuses a window or sinks that are not whole numbers', () => {
    expect(() => new CommvqRule(0, 0)).toThrow(/window/);
    expect(() => new CommvqRule(8, -1)).toThrow(/sinks/);
  });
});
