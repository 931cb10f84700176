import { packedCodeBytes } from '../tensor/code-packing.js';
import type { CommvqGeometry } from '../commvq/geometry.js';
import { bytesPerElement, type DType } from '../tensor/dtype.js';

/**
 * What a KV cache costs, by arithmetic (spec §7.5): the numbers measure-memory checks the allocator against.
 * Per token and layer:
 *   dense:  2·D·bytes(dtype)                                   (keys and values, D = H_kv·D_h)
 *   CommVQ: key R·G·12 bits packed + a bf16 norm, value N_c bits + a bf16 scale
 * plus, for CommVQ, the exact window of W tokens held densely.
 */
export interface CacheGeometry {
  numLayers: number; // L
  kvHeads: number; // H_kv = G
  headDim: number; // D_h
}

/** R, N_c and W: defined with the bits → geometry map (commvq/geometry.ts), re-exported for the accounting's callers. */
export type { CommvqGeometry };

export function denseBytesPerToken(g: CacheGeometry, dtype: DType = 'bf16'): number {
  return 2 * g.kvHeads * g.headDim * bytesPerElement(dtype);
}

/** Bytes per compressed token and layer: { key, value } as the packed layout stores them. */
export function commvqBytesPerToken(g: CacheGeometry, c: CommvqGeometry): { key: number; value: number } {
  return { key: packedCodeBytes(c.residuals * g.kvHeads) + 2, value: c.codeBits / 8 + 2 };
}

/** The whole cache for `tokens` tokens of one sequence, all layers. */
export function cacheBytes(g: CacheGeometry, tokens: number, commvq?: CommvqGeometry, exactDtype: DType = 'bf16'): number {
  const dense = denseBytesPerToken(g, exactDtype);
  if (!commvq) return g.numLayers * tokens * dense;
  const exact = Math.min(tokens, commvq.window);
  const { key, value } = commvqBytesPerToken(g, commvq);
  return g.numLayers * ((tokens - exact) * (key + value) + exact * dense);
}

/**
 * Codebooks resident for attention on codes, all layers: key θ [R, G, 2·N_h, D_h/2] and the value codebook
 * E [N_c, D] (the value encoders are weights, counted apart). Centres are never expanded.
 */
export function codebookBytes(g: CacheGeometry, c: CommvqGeometry, o: { halfSize?: number; dtype?: DType } = {}): { key: number; value: number } {
  const element = bytesPerElement(o.dtype ?? 'f32');
  const key = c.residuals * g.kvHeads * 2 * (o.halfSize ?? 64) * (g.headDim / 2) * element;
  const value = c.codeBits * g.kvHeads * g.headDim * element;
  return { key: g.numLayers * key, value: g.numLayers * value };
}
