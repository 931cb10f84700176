/**
 * CommVQ's sizes by bit width, in one place (spec §3.7, §5.2): bits → R key residual stages and N_c value bits per
 * token, the default exact window W, and the names the trainers give codebook files in a run folder.
 *
 *   const bits = toBits('2');                        // 2 (anything else: OptionError on `bits`)
 *   commvqGeometry(bits, 1024)                       // { residuals: 21, codeBits: 2048, window: 128 }
 *   keyCodebookFileName('em', 1)                     // 'key-codebook-em-1bit.arrow'
 */
import { OptionError } from '../errors.js';

/** CommVQ bits per key/value channel: 1 or 2, the paper's two widths. */
export type Bits = 1 | 2;

export const BIT_WIDTHS: readonly Bits[] = [1, 2];

/** W: the recent tokens a CommVQ cache keeps exact, compressed in aligned blocks of W (the reference: 128). */
export const DEFAULT_WINDOW = 128;

/** R for 1 and 2 bits (spec §3.7): residual stages of 12-bit key codes per KV head. */
export const RESIDUALS_FOR_BITS: Readonly<Record<Bits, number>> = { 1: 11, 2: 21 };

/** The one answer to a bit width that is not 1 or 2, whichever command or option it came through. */
export const BITS_PROBLEM = 'CommVQ bit widths are 1 and 2';

/**
 * A bit width from an option value: `1`, `2` (number or text); anything else is an OptionError on `bits`.
 *
 *   toBits('1')   // 1
 *   toBits(3)     // throws: bits 3: CommVQ bit widths are 1 and 2
 */
export function toBits(value: string | number): Bits {
  const text = String(value).trim();
  if (text === '1' || text === '2') return Number(text) as Bits;
  throw new OptionError('bits', String(value), BITS_PROBLEM);
}

/** n_e, the 4-way groups of 2 bits that encode one value vector of width D (spec §5.2): floor(D·bits/2). N_c = 2·n_e. */
export function valueCodeGroups(bits: Bits, featDim: number): number {
  return Math.floor((featDim * bits) / 2);
}

/** What sets a CommVQ cache's size: R key stages, N_c value bits per token, W exact tokens. */
export interface CommvqGeometry {
  residuals: number; // R
  codeBits: number; // N_c (value bits per token)
  window: number; // W, exact recent tokens
}

/**
 * The standard geometry of a bit width for values of width D = H_kv·D_h: R = 11 or 21, N_c = 2·floor(D·bits/2),
 * W = 128. Codebook files may hold another R (train-key --residuals); their own geometry then wins.
 *
 *   commvqGeometry(1, 1024)   // { residuals: 11, codeBits: 1024, window: 128 }
 */
export function commvqGeometry(bits: Bits, featDim: number): CommvqGeometry {
  return { residuals: RESIDUALS_FOR_BITS[bits], codeBits: 2 * valueCodeGroups(bits, featDim), window: DEFAULT_WINDOW };
}

/** How a key codebook was trained: the reference EM, or EM refined end to end. */
export type KeyMethod = 'em' | 'e2e';

/** `key-codebook-em-1bit.arrow`: what train-key writes into a run folder. */
export function keyCodebookFileName(method: KeyMethod, bits: Bits): string {
  return `key-codebook-${method}-${bits}bit.arrow`;
}

/** `value-codebook-1bit.arrow`: what train-value writes into a run folder. */
export function valueCodebookFileName(bits: Bits): string {
  return `value-codebook-${bits}bit.arrow`;
}
