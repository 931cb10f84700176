import type { Backend } from '../backend/backend.js';
import { rowView } from '../backend/cuda/cuda-tensor.js';
import type { Tensor } from '../tensor/tensor.js';
import type { EncodePart } from './commvq-store.js';

/**
 * How the device store lays out the tokens of one encoding pass: the parts' rows gathered into one tensor, and the
 * runs of them that encode and pack alike.
 */

/** Consecutive compressed rows of one sequence encoded alike: gathered rows [from, to) go to rows [at, …). */
export interface EncodeRun {
  sequence: number;
  at: number;
  from: number;
  to: number;
  noise: EncodePart['noise'];
}

/**
 * The parts' rows gathered into one bf16 [total, D] tensor: each part's held exact slots (rows of `held`
 * [B·exactRows, D], sequence-major), then its rows of the step. Neighbouring rows of one source are copied as one, and
 * parts that all lie in one run of one source are a view of it, not a copy.
 *
 *   const kPre = gatherRows(backend, parts, { held: exactKPre, step: kv.kPre, exactRows: X }, total);
 */
export function gatherRows(b: Backend, parts: readonly EncodePart[], from: { held: Tensor; step?: Tensor; exactRows: number }, total: number): Tensor {
  const segments: { src: Tensor; from: number; to: number }[] = [];
  for (const p of parts) {
    const first = p.sequence * from.exactRows + p.slot;
    if (p.held > 0) segments.push({ src: from.held, from: first, to: first + p.held });
    if (p.rows > 0) segments.push({ src: from.step!, from: p.row, to: p.row + p.rows });
  }
  const merged = segments.reduce<typeof segments>((acc, g) => {
    const last = acc[acc.length - 1];
    if (last && last.src === g.src && last.to === g.from) last.to = g.to;
    else acc.push({ ...g });
    return acc;
  }, []);
  if (merged.length === 1) return rowView(merged[0]!.src, merged[0]!.from, merged[0]!.to - merged[0]!.from);
  const all = b.zeros([total, from.held.shape[1]!], 'bf16');
  let row = 0;
  for (const g of merged) {
    b.writeRows(all, row, rowView(g.src, g.from, g.to - g.from));
    row += g.to - g.from;
  }
  return all;
}

/**
 * The parts as runs over the gathered rows: consecutive parts of one sequence that draw no noise are encoded as one
 * (one value-encoder call); a sampled block is a run of its own (its own noise stream).
 *
 *   encodeRuns(parts)   // [{ sequence: 0, at: 256, from: 0, to: 1024, noise: 'argmax' }] for 8 argmax blocks
 */
export function encodeRuns(parts: readonly EncodePart[]): EncodeRun[] {
  const runs: EncodeRun[] = [];
  let row = 0;
  for (const p of parts) {
    const n = p.held + p.rows;
    const last = runs[runs.length - 1];
    if (last && p.noise === 'argmax' && last.noise === 'argmax' && last.sequence === p.sequence && last.at + (last.to - last.from) === p.at) last.to += n;
    else runs.push({ sequence: p.sequence, at: p.at, from: row, to: row + n, noise: p.noise });
    row += n;
  }
  return runs;
}
