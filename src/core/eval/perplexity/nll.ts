/**
 * Negative log-likelihood of target tokens from logits: −log softmax(logits_i)[target_i], in f64 with the max
 * subtracted (log-sum-exp), summed over rows. Perplexity is exp(sum / count).
 *
 *   const { sum, count } = rowsNll(Float32Array.of(0, 0, 0, 0), 2, [1, 0]);   // sum = 2·log 2, count 2
 */
import { CommvqError } from '../../errors.js';

export interface NllSum {
  /** Σ −log p(target) over the scored tokens (natural log) */
  sum: number;
  count: number;
}

/** NLL of `targets[r]` under row r of `logits` [rows, vocab] (f32, row-major). */
export function rowsNll(logits: Float32Array, vocab: number, targets: readonly number[]): NllSum {
  if (logits.length !== targets.length * vocab) throw new Error(`rowsNll: ${logits.length} logits for ${targets.length} rows of ${vocab}`);
  let sum = 0;
  targets.forEach((target, r) => {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) if (row[i]! > max) max = row[i]!;
    let z = 0;
    for (let i = 0; i < vocab; i++) z += Math.exp(row[i]! - max);
    const nll = max + Math.log(z) - row[target]!;
    if (!Number.isFinite(nll)) throw new CommvqError(`the logits of a scored position hold NaN or Inf: no perplexity`, 'the weights or the cache produce non-finite activations');
    sum += nll;
  });
  return { sum, count: targets.length };
}

/** exp(mean NLL); null when nothing was scored. */
export function perplexityOf(n: NllSum): number | null {
  return n.count === 0 ? null : Math.exp(n.sum / n.count);
}
