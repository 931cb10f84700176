/**
 * One window's NLL through a cache, with every position attending as it would while decoding (the strict rule):
 * a query sees the compressed blocks before its own block and its own block exact. How a window runs depends on the
 * cache, never the result's meaning:
 *
 * - dense: the whole window in one layer-by-layer prefill, logits at every row (exact is exact either way);
 * - a CommVQ cache with prefill=strict: the same prefill, which follows the decoding rule per W-block of queries
 *   (commvq-cache.ts) — equal to feeding the window one token at a time (tested);
 * - any other cache (KIVI, int4/int2, fp8), whose prompt attends exactly: one decode step per token, the decoding
 *   path itself (slow: T forwards of one token).
 *
 * A faithful CommVQ prefill attends exactly over the prompt, so its perplexity would be the dense one: refused.
 *
 *   const n = windowNll(model, caches, ids.subarray(w.begin, w.end), w.scoreFrom);
 */
import { CommvqError } from '../../errors.js';
import type { CacheFactory } from '../../cache-factory.js';
import type { KVCache } from '../../model/kv-cache.js';
import type { LlamaModel } from '../../model/llama.js';
import type { Tensor } from '../../tensor/tensor.js';
import { rowsNll, type NllSum } from './nll.js';

/** How a cache's windows run: one prefill of the whole window, or one decode step per token. */
export type WindowMode = 'prefill' | 'decode-steps';

/** Logit rows copied to the host at a time (bounds host memory at a large vocabulary). */
const HOST_ROWS = 256;

/** The way a cache's windows are run, or an error for a cache whose prompt would not attend as in decoding. */
export function windowMode(caches: Pick<CacheFactory, 'description'>): WindowMode {
  const d = caches.description;
  if (d.mode === 'dense' || (d.mode === 'commvq' && d.prefill === 'strict')) return 'prefill';
  if (d.mode === 'commvq') {
    throw new CommvqError(
      `${d.label}: prefill=${d.prefill} attends exactly over the window, so its perplexity would be the dense one`,
      'perplexity needs prefill=strict (the default of eval perplexity when prefill is not given)',
    );
  }
  return 'decode-steps';
}

/** Σ NLL of the window's tokens at offsets [scoreFrom, ids.length), each predicted from the tokens before it. */
export function windowNll(model: LlamaModel, caches: CacheFactory, ids: Int32Array, scoreFrom: number): NllSum {
  if (scoreFrom < 1 || scoreFrom >= ids.length) throw new Error(`windowNll: scoreFrom ${scoreFrom} outside 1..${ids.length - 1}`);
  const mode = windowMode(caches);
  const cache = caches.make(ids.length);
  try {
    return mode === 'prefill' ? prefillNll(model, cache, ids, scoreFrom) : stepNll(model, cache, ids, scoreFrom);
  } finally {
    cache.dispose();
  }
}

/** Logits of every row from one prefill; row i predicts token i + 1. */
function prefillNll(model: LlamaModel, cache: KVCache, ids: Int32Array, scoreFrom: number): NllSum {
  const logits = model.prefill(ids, cache, { logits: 'all' }); // [T, V]
  try {
    const total: NllSum = { sum: 0, count: 0 };
    for (let r0 = scoreFrom - 1; r0 < ids.length - 1; r0 += HOST_ROWS) {
      const r1 = Math.min(ids.length - 1, r0 + HOST_ROWS);
      add(total, hostNll(model, logits, r0, r1, Array.from(ids.subarray(r0 + 1, r1 + 1))));
    }
    return total;
  } finally {
    logits.dispose();
  }
}

/** One decode step per token: the logits after token i predict token i + 1. */
function stepNll(model: LlamaModel, cache: KVCache, ids: Int32Array, scoreFrom: number): NllSum {
  const total: NllSum = { sum: 0, count: 0 };
  for (let i = 0; i < ids.length - 1; i++) {
    const logits = model.forward(ids.subarray(i, i + 1), cache, { logits: 'last' }); // [1, V]
    try {
      if (i + 1 >= scoreFrom) add(total, hostNll(model, logits, 0, 1, [ids[i + 1]!]));
    } finally {
      logits.dispose();
    }
  }
  return total;
}

function hostNll(model: LlamaModel, logits: Tensor, r0: number, r1: number, targets: number[]): NllSum {
  const b = model.backend;
  const rows = b.sliceRows(logits, r0, r1);
  try {
    return rowsNll(b.toFloat32(rows), model.config.vocabSize, targets);
  } finally {
    rows.dispose();
  }
}

function add(total: NllSum, n: NllSum): void {
  total.sum += n.sum;
  total.count += n.count;
}
