import { packedCodeBytes } from '../tensor/code-packing.js';
import type { CommvqGeometry } from '../commvq/geometry.js';
import { kiviSplit } from '../quant/kivi.js';
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

/**
 * Bytes per compressed token and layer under `compress` (the CommVQ ablations): the half in codes as
 * commvqBytesPerToken packs it, the other half a row of D = H_kv·D_h exact values in `exactDtype`.
 *
 *   commvqAblationBytesPerToken({ numLayers: 32, kvHeads: 8, headDim: 128 }, { residuals: 11, codeBits: 1024, window: 128 }, 'keys')
 *   // { key: 134, value: 2048 }: 132 bytes of codes + a norm, and 1024 bf16 values
 */
export function commvqAblationBytesPerToken(g: CacheGeometry, c: CommvqGeometry, compress: 'keys' | 'values' | 'both', exactDtype: DType = 'bf16'): { key: number; value: number } {
  const codes = commvqBytesPerToken(g, c);
  const row = g.kvHeads * g.headDim * bytesPerElement(exactDtype);
  return { key: compress === 'values' ? row : codes.key, value: compress === 'keys' ? row : codes.value };
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

/** KIVI's code width and group (peers/kivi-cache.ts); R, the exact tokens, matters only to kiviCacheBytes. */
export interface KiviGeometry {
  bits: 1 | 2;
  group: number; // G
  residual: number; // R
}

/**
 * Bytes per quantized token and layer, { key, value }: D·bits/8 of packed codes plus D/G groups' f16 scale and zero
 * (4 bytes each), D = H_kv·D_h. For keys a group spans G tokens, so a token carries 1/G of each channel's 4 bytes:
 * the same D·4/G. So the CommVQ paper's average bits (averageBits) are bits + 32/G whatever D: KIVI-2 at G = 32 is
 * 2 + 32/32 = 3.00 bits, KIVI-1 is 1 + 1 = 2.00, the exact recent tokens left out.
 *
 *   kiviBytesPerToken({ numLayers: 32, kvHeads: 8, headDim: 128 }, { bits: 2, group: 32 })   // { key: 384, value: 384 }
 */
export function kiviBytesPerToken(g: CacheGeometry, k: Pick<KiviGeometry, 'bits' | 'group'>): { key: number; value: number } {
  const D = g.kvHeads * g.headDim;
  const each = (D * k.bits) / 8 + (D / k.group) * 4;
  return { key: each, value: each };
}

/**
 * The whole KIVI cache for `tokens` tokens of one sequence, all layers: quantized keys and values as kiviSplit gives
 * them (keys T − T mod R, values max(0, T − R)), the rest exact in `exactDtype`.
 *
 *   kiviCacheBytes(g, 200, { bits: 2, group: 32, residual: 128 })   // keys 128 quantized + 72 exact, values 72 + 128
 */
export function kiviCacheBytes(g: CacheGeometry, tokens: number, k: KiviGeometry, exactDtype: DType = 'bf16'): number {
  const row = g.kvHeads * g.headDim * bytesPerElement(exactDtype); // one token's keys or values, exact
  const { key, value } = kiviBytesPerToken(g, k);
  const keys = kiviSplit(tokens, 'keys', k);
  const values = kiviSplit(tokens, 'values', k);
  return g.numLayers * (keys.quantized * key + values.quantized * value + (keys.exact + values.exact) * row);
}

/**
 * int4/int2 (HF QuantizedCache) bytes per quantized token and layer, keys and values: W·bits/8 code bytes plus an f16
 * scale and an f16 zero per group of `group` channels (W = H_kv·D_h), as peers/int-rows.ts lays a token out. This is
 * the CommVQ paper's "average bits" convention, scale and zero counted as 16 bits each per group: bits + 32/group
 * per value, INT4 g64 = 4 + 32/64 = 4.5 bits, INT2 g32 = 2 + 32/32 = 3. The exact decode tokens (at most R − 1) are apart.
 *
 *   intBytesPerToken({ numLayers: 32, kvHeads: 8, headDim: 128 }, 4, 64)   // 2 · (512 + 64) = 1152
 */
export function intBytesPerToken(g: CacheGeometry, bits: 4 | 2, group: number): number {
  const width = g.kvHeads * g.headDim;
  return 2 * ((width * bits) / 8 + (width / group) * 4);
}

/**
 * fp8 (e4m3) bytes per token and layer, keys and values: one byte per value plus an f32 scale per head
 * (peers/fp8-rows.ts): 8 + 32/D_h average bits, 8.25 at D_h = 128.
 *
 *   fp8BytesPerToken({ numLayers: 32, kvHeads: 8, headDim: 128 })   // 2 · (1024 + 32) = 2112
 */
export function fp8BytesPerToken(g: CacheGeometry): number {
  return 2 * (g.kvHeads * g.headDim + 4 * g.kvHeads);
}

/**
 * The whole int4/int2 cache for `tokens` tokens of one sequence, all layers, as HF's rule holds it after a prompt and
 * decoding: every token in codes (intBytesPerToken) plus room for the R − 1 exact decode tokens in `exactDtype`.
 *
 *   intCacheBytes({ numLayers: 32, kvHeads: 8, headDim: 128 }, 1000, 4, 64, 128)   // 32 · (1000·1152 + 127·4096)
 */
export function intCacheBytes(g: CacheGeometry, tokens: number, bits: 4 | 2, group: number, residual: number, exactDtype: DType = 'bf16'): number {
  const exact = 2 * Math.max(residual - 1, 0) * g.kvHeads * g.headDim * bytesPerElement(exactDtype);
  return g.numLayers * (tokens * intBytesPerToken(g, bits, group) + exact);
}

/**
 * Average bits per stored K/V value of a cache costing `bytesPerToken` per token and layer (keys and values).
 *
 *   averageBits(g, intBytesPerToken(g, 4, 64))   // 4.5
 */
export function averageBits(g: CacheGeometry, bytesPerToken: number): number {
  return (8 * bytesPerToken) / (2 * g.kvHeads * g.headDim);
}
