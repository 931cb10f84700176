import type { LayerKV } from '../model/llama.js';
import type { Tensor } from '../tensor/tensor.js';
import type { GumbelNoise } from '../values/train-ops.js';
import type { QueryBlock } from './commvq-rule.js';

/**
 * Where a CommVQ cache keeps its tokens and how it computes on them. `CommvqCache` (commvq-cache.ts) owns the
 * rules (commvq-rule.ts) and every count; a store owns the memory and the arithmetic: packed codes of compressed
 * tokens, exact rows in slots, encoding, and attention. Two implementations, tested one against the other:
 * `HostCommvqStore` (host-store.ts: the f64 reference, attention on codes) and `DeviceCommvqStore`
 * (device-store.ts: one packed device allocation and the kernels).
 */
export interface CommvqStore {
  /**
   * Encodes tokens into compressed rows: each part's tokens (held exact slots first, then rows of the step's kv) go
   * to compressed rows [at, at + n) of its sequence. Several parts, several sequences, one pass where the store can.
   */
  encode(layer: number, parts: readonly EncodePart[], kv?: LayerKV): void;
  /** Rows [row, row + count) of the step's kPre, k and v into exact slots [slot, slot + count) of a sequence. */
  keepExact(layer: number, sequence: number, slot: number, kv: LayerKV, row: number, count: number): void;
  /**
   * A decode step: each token (already kept exact) attends over its sequence's compressed tokens on codes and its
   * exact slots, one softmax. q [n, H_q·D_h] → [n, H_q·D_h]; tokens are consecutive sequences, in row order.
   */
  attendTokens(layer: number, q: Tensor, tokens: readonly DecodeToken[]): Tensor;
  /**
   * A strict prompt chunk of one sequence (decoding rule per block): queries of block k see its `visible`
   * compressed tokens and the exact tokens from its block start to themselves, with the sinks. Exact tokens before
   * the chunk are in their slots as laid out for `chunk.compressedBefore` (the chunk's encoding does not move them);
   * the chunk's own are the step's rows. q [T, H_q·D_h] → [T, H_q·D_h].
   */
  attendPrompt(layer: number, chunk: PromptChunk, q: Tensor, kv: LayerKV): Tensor;
  /** The first `count` compressed tokens of a sequence as the packed arrays hold them, on the host. */
  packed(layer: number, sequence: number, count: number): PackedTokens;
  /** The first `count` compressed tokens dequantized: keys pre-RoPE and values [count, D], on the host. */
  dequantized(layer: number, sequence: number, count: number): { keys: Float32Array; values: Float32Array };
  /** Bytes that hold tokens, given how many each sequence holds ([layer][sequence]). */
  bytes(counts: readonly (readonly TokenCounts[])[]): number;
  /** Bytes of resident codebooks (key θ, value E and scale) and, apart, of the value encoders. */
  residentBytes(): { codebooks: number; encoders: number };
  /** GPU milliseconds of key and value encoding since the last call, where the store times them. */
  phaseTimes?(): Record<string, number>;
  /** Whether every token row is allocated up front (a sequence can be taken as filled without writing it). */
  readonly preallocated: boolean;
  /** The prompt is complete: free prompt-time scratch. */
  endPrompt(): void;
  dispose(): void;
}

/** What a cache knows of one sequence of one layer. */
export interface TokenCounts {
  /** tokens held */
  length: number;
  /** tokens in codes: positions sinks .. sinks + compressed − 1 */
  compressed: number;
}

/** Tokens of one sequence to encode: `held` exact slots from `slot`, then `rows` step rows from `row`. */
export interface EncodePart {
  readonly sequence: number;
  /** compressed row of the first token */
  readonly at: number;
  readonly slot: number;
  readonly held: number;
  readonly row: number;
  readonly rows: number;
  /** value-code noise (one stream per block) */
  readonly noise: GumbelNoise;
}

/** One decode token: its row in q and its sequence's counts once it is stored. */
export interface DecodeToken {
  readonly sequence: number;
  readonly row: number;
  readonly compressed: number;
  /** exact slots in use, the token's own included */
  readonly exact: number;
}

/** A strict prompt chunk: positions [start, end) of a sequence, its query blocks, and what was held before it. */
export interface PromptChunk {
  readonly sequence: number;
  readonly start: number;
  readonly end: number;
  /** compressed tokens before the chunk: its held window sits in slots laid out for this count */
  readonly compressedBefore: number;
  readonly blocks: readonly QueryBlock[];
}

/** Packed compressed tokens (layouts of code-packing.ts): per token R·G 12-bit codes, a bf16 norm, N_c bits, a bf16 ρ′. */
export interface PackedTokens {
  readonly keyCodes: Uint8Array;
  readonly keyNorms: Uint16Array;
  readonly valueBits: Uint8Array;
  readonly valueRho: Uint16Array;
}
