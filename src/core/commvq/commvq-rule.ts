import { CommvqError } from '../errors.js';
import type { GumbelNoise } from '../values/train-ops.js';

/** How the prompt's own attention is computed (spec §10.1 item 1); every result records which. */
export type PrefillMode = 'faithful' | 'strict';

/** Value codes: deterministic argmax, or the reference's Gumbel sampling with a seed (§10.1 item 2). */
export type ValueEncoding = 'argmax' | { gumbelSeed: number };

/** Positions [from, to) of one sequence. */
export interface PositionRange {
  readonly from: number;
  readonly to: number;
}

/** Query rows of a prompt that attend alike: positions [from, to) see `visible` compressed tokens, then exact ones. */
export interface QueryBlock extends PositionRange {
  readonly visible: number;
}

/**
 * Where each token of a CommVQ cache lives and when it is compressed (spec §6.3, §6.6): the rules every CommVQ
 * store follows, written once.
 *
 * - The first `sinks` positions stay exact forever. After them, positions fall in blocks of W (the exact window):
 *   a block is compressed as a whole, never part of one.
 * - Decoding rule (§6.6): before the token at position p is stored, every block before p's block is compressed;
 *   a query at p sees the compressed tokens [sinks, blockStart(p)) on codes and [blockStart(p), p] exact (with the
 *   sinks). A strict prompt follows the same rule for each of its tokens, so its queries attend per block.
 * - Faithful prefill (§6.3, the reference): the prompt attends exactly over itself, then every whole block of it is
 *   compressed at once.
 * - Exact slots: sinks at their own position, the window's tokens after them (slot = position − compressed); the
 *   window always starts at a block boundary, so a flush takes all of it.
 * - Sampled value codes draw one noise stream per layer and block, reproducible for a seed.
 *
 *   const rule = new CommvqRule(128, 4);
 *   rule.blockStart(300);        // 260: the block holding position 300 starts at 4 + 2·128
 */
export class CommvqRule {
  constructor(
    /** W: tokens per compressed block (the reference's residual length, 128) */
    readonly window: number,
    readonly sinks: number,
  ) {
    if (!Number.isInteger(window) || window < 1) throw new CommvqError(`CommVQ window must be a whole number ≥ 1, not ${window}`);
    if (!Number.isInteger(sinks) || sinks < 0) throw new CommvqError(`CommVQ sinks must be a whole number ≥ 0, not ${sinks}`);
  }

  /** Exact rows a sequence needs: the sinks and one window. */
  get exactRows(): number {
    return this.sinks + this.window;
  }

  /** Absolute position where the block holding `position` starts (a sink is its own block start). */
  blockStart(position: number): number {
    return Math.max(this.sinks, this.sinks + Math.floor((position - this.sinks) / this.window) * this.window);
  }

  /** Compressed tokens a query at `position` sees (decoding rule): every block before its own. */
  visibleAt(position: number): number {
    return this.blockStart(position) - this.sinks;
  }

  /** Compressed tokens once a step has stored positions up to `end` (exclusive): decoding rule, or faithful prefill. */
  compressedAfter(end: number, mode: 'rule' | 'faithful'): number {
    return end === 0 ? 0 : this.blockStart(mode === 'faithful' ? end : end - 1) - this.sinks;
  }

  /** The exact slot of `position` while `compressed` tokens are compressed. */
  slot(position: number, compressed: number): number {
    return position < this.sinks ? position : position - compressed;
  }

  /** Absolute position of compressed token t. */
  position(t: number): number {
    return this.sinks + t;
  }

  /** The query blocks of prompt positions [start, end) under the decoding rule: one per W-block (sinks one run). */
  queryBlocks(start: number, end: number): QueryBlock[] {
    const out: QueryBlock[] = [];
    for (let from = start; from < end; ) {
      const to = from < this.sinks ? Math.min(end, this.sinks) : Math.min(end, this.blockStart(from) + this.window);
      out.push({ from, to, visible: this.visibleAt(from) });
      from = to;
    }
    return out;
  }

  /** Compressed-token ranges [from, to) split at block boundaries: each block is encoded with its own noise stream. */
  blocksOf(from: number, to: number): PositionRange[] {
    const out: PositionRange[] = [];
    for (let t = from; t < to; ) {
      const next = Math.min(to, (Math.floor(t / this.window) + 1) * this.window);
      out.push({ from: t, to: next });
      t = next;
    }
    return out;
  }

  /** The value-code noise of the block starting at compressed token `at` of `layer`. */
  noise(encoding: ValueEncoding, layer: number, at: number): GumbelNoise {
    return encoding === 'argmax' ? 'argmax' : { seed: encoding.gumbelSeed, stream: ((layer << 20) ^ at) >>> 0 };
  }
}
