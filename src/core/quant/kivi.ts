/**
 * KIVI's split of one layer's history of T tokens into a quantized prefix and an exact (full-precision) tail, as the
 * paper's Algorithm 1 and its reference code (jy-yuan/KIVI, models/llama_kivi.py) define it. With G = `group`,
 * R = `residual` (R a positive multiple of G, as KIVI requires: keys are quantized R tokens at a time in groups of G):
 *
 *   keys   (per channel, groups of G tokens): exact = T mod R,      quantized = T − (T mod R)
 *          Prefill keeps the last T mod R tokens exact; decoding appends to the exact tail and, the moment it holds R
 *          tokens, quantizes all R (R/G whole groups) and empties it. So 0 ≤ exact < R, and quantized is a multiple
 *          of R, hence of G.
 *   values (per token, groups of G channels): exact = min(T, R),     quantized = max(0, T − R)
 *          The last R tokens stay exact; each new token pushes the oldest exact one into quantized storage (per-token
 *          groups need no token grouping, so values flush one token at a time).
 *
 * Both are pure functions of T: a prompt of T tokens and a shorter prompt decoded up to T leave the same split. Note
 * the asymmetry: right after a key flush (T a multiple of R) no key is exact, while the values always keep the most
 * recent min(T, R) tokens.
 */
import { CommvqError, OptionError } from '../errors.js';

export type KiviPart = 'keys' | 'values';

export interface KiviSplit {
  /** the oldest tokens, in quantized storage */
  quantized: number;
  /** the most recent tokens, kept exact */
  exact: number;
}

/** Checks KIVI's group and residual (OptionError by the option names `group`, `residual`). */
export function checkKiviShape(group: number, residual: number): void {
  if (!Number.isInteger(group) || group <= 0) throw new OptionError('group', String(group), 'KIVI groups hold a positive whole number of tokens or channels');
  if (!Number.isInteger(residual) || residual <= 0 || residual % group !== 0) {
    throw new OptionError('residual', String(residual), `KIVI's residual is a positive multiple of group (${group})`, 'KIVI uses group=32, residual=128');
  }
}

/** checkKiviShape, and that groups of channels fit a head (values are quantized per token in groups within a head). */
export function checkKiviCacheShape(group: number, residual: number, headDim: number): void {
  checkKiviShape(group, residual);
  if (headDim % group !== 0) {
    throw new CommvqError(`kivi: group=${group} does not divide head_dim ${headDim}`, 'values are quantized per token in groups of channels within a head: pick a divisor of head_dim');
  }
}

/**
 * How many of T tokens KIVI holds quantized and how many exact, for keys or values.
 *
 *   kiviSplit(200, 'keys',   { group: 32, residual: 128 })  // { quantized: 128, exact: 72 }
 *   kiviSplit(200, 'values', { group: 32, residual: 128 })  // { quantized: 72,  exact: 128 }
 *   kiviSplit(256, 'keys',   { group: 32, residual: 128 })  // { quantized: 256, exact: 0 }
 */
export function kiviSplit(tokens: number, part: KiviPart, o: { group: number; residual: number }): KiviSplit {
  checkKiviShape(o.group, o.residual);
  if (!Number.isInteger(tokens) || tokens < 0) throw new OptionError('tokens', String(tokens), 'a token count is a whole number ≥ 0');
  const exact = part === 'keys' ? tokens % o.residual : Math.min(tokens, o.residual);
  return { quantized: tokens - exact, exact };
}
