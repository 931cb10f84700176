import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { rowView } from '../backend/cuda/cuda-tensor.js';
import { prefillAttentionSwitched, switchedBlockRows } from '../backend/cuda/ops/attention.js';
import type { LayerKV } from '../model/llama.js';
import { scoped, type Tensor } from '../tensor/tensor.js';
import type { StoreSettings } from './commvq-cache.js';
import type { QueryBlock } from './commvq-rule.js';
import type { PromptChunk } from './commvq-store.js';

/** Compressed tokens dequantized per step when a prompt chunk rebuilds its prefix (bounds the temporaries). */
const DEQUANT_SEGMENT = 8192;

/** What the prompt attention reads of the device store. */
export interface PromptSource {
  /** the layer's exact rows, bf16 [B·X, D] (rotated keys, values) */
  exactRows(layer: number): { k: Tensor; v: Tensor };
  /** kPre rows [kRow, …) and v rows [vRow, …) ← compressed tokens t0..t1−1 of a sequence, dequantized (keys before RoPE) */
  dequantizeInto(layer: number, sequence: number, t0: number, t1: number, kPre: Tensor, kRow: number, v: Tensor, vRow: number): void;
}

/**
 * Strict prompt attention on the device: the decoding rule per W-block of queries over a scratch K/V [capacity, D]
 * (post-RoPE, bf16) that holds each position as the block attending now sees it — the compressed prefix dequantized
 * (kernels/commvq_dequant.cu, RoPE reapplied), the held exact tokens and the chunk's own rows exact — so a 128K
 * prompt in chunks holds at most one layer's prefix at a time, never the bf16 K/V of all layers. The blocks a chunk
 * compressed are dequantized once and enter the scratch block by block, after the queries that still see them
 * exact. A prompt run layer by layer (LlamaModel.prefill) finds its layer's prefix in the scratch from the chunk
 * before; one fed token-major (a forward per chunk) has it dequantized again for every chunk and layer.
 *
 *   const prompt = new DevicePrompt(backend, settings, store);
 *   const out = prompt.attend(layer, chunk, q, kv);   // after the store encoded what the chunk compresses
 */
export class DevicePrompt {
  private scratch: { keys: Tensor; values: Tensor } | undefined; // [capacity, D] bf16 each
  /** whose prefix the scratch holds: compressed tokens [0, dequantized) of one layer and sequence, dequantized */
  private owner: { layer: number; sequence: number; dequantized: number } | undefined;

  constructor(
    private readonly backend: CudaBackend,
    private readonly s: StoreSettings,
    private readonly source: PromptSource,
  ) {}

  attend(layer: number, chunk: PromptChunk, q: Tensor, kv: LayerKV): Tensor {
    const b = this.backend;
    const { rule } = this.s;
    const X = rule.exactRows;
    const { sequence, start, compressedBefore: N0 } = chunk;
    const { keys, values } = this.prefillScratch();
    // the chunk before of the same layer (a prompt run layer by layer) left this prefix in the scratch already
    const o = this.owner;
    if (!(o && o.layer === layer && o.sequence === sequence && o.dequantized === N0)) this.writeDequantized(layer, sequence, 0, N0, keys, values);
    // exact tokens held from earlier steps: sinks at their positions, the window after the compressed ones; then
    // the chunk's own rows
    const held = start - N0; // exact slots in use
    const exact = this.source.exactRows(layer);
    for (const [dst, src, own] of [[keys, exact.k, kv.k], [values, exact.v, kv.v]] as const) {
      const copy = (slot0: number, slot1: number, position: number) => {
        if (slot1 <= slot0) return;
        b.writeRows(dst, position, rowView(src, sequence * X + slot0, slot1 - slot0));
      };
      copy(0, Math.min(rule.sinks, held), 0);
      copy(rule.sinks, held, rule.position(N0));
      b.writeRows(dst, start, own);
    }
    const out = b.zeros(q.shape, q.dtype);
    const last = chunk.blocks[chunk.blocks.length - 1]!.visible;
    const whole = this.switchable(chunk) ? chunk.blocks.findIndex((k) => k.from >= rule.sinks && k.from === rule.blockStart(k.from)) : -1;
    if (whole < 0) {
      this.attendBlocks(layer, chunk, chunk.blocks, q, out, last);
    } else {
      // blocks that began before the chunk or hold sinks attend alone, over the scratch as it is; then the rest,
      // whole W-blocks, in one launch that reads their own keys exact from the step and the prefix from the scratch
      this.attendBlocks(layer, chunk, chunk.blocks.slice(0, whole), q, out, N0);
      this.writeDequantized(layer, sequence, N0, last, keys, values);
      const from = chunk.blocks[whole]!.from;
      const rows = chunk.end - from;
      const { queryHeads, kvHeads, headDim } = this.s.shape;
      const at = (t: Tensor) => rowView(t, from - start, rows);
      prefillAttentionSwitched(b.ctx, { q: at(q), k: keys, v: values, kx: at(kv.k), vx: at(kv.v), out: at(out) },
        { queryRows: rows, queryHeads, kvHeads, headDim, qStart: from, kvLength: chunk.end }, from);
    }
    this.owner = { layer, sequence, dequantized: last };
    return out;
  }

  /**
   * Whether whole W-blocks of the chunk can attend in one launch: the switched kernel's query blocks of 128 rows must
   * be the cache's W-blocks (W = 128, block starts on multiples of 128: no sinks, or a multiple of 128 of them).
   */
  private switchable(chunk: PromptChunk): boolean {
    const { window, sinks } = this.s.rule;
    return window === switchedBlockRows() && sinks % window === 0 && chunk.end - chunk.start > 1;
  }

  /**
   * Query blocks one launch each, over the scratch: before each block, the tokens it sees compressed (up to its
   * `visible`) enter the scratch dequantized, once, from a copy of the chunk's freshly compressed tokens [from, last).
   */
  private attendBlocks(layer: number, chunk: PromptChunk, blocks: readonly QueryBlock[], q: Tensor, out: Tensor, last: number): void {
    const b = this.backend;
    const { rule } = this.s;
    const { keys, values } = this.prefillScratch();
    const D = this.s.shape.kvHeads * this.s.shape.headDim;
    const N0 = chunk.compressedBefore;
    scoped((s) => {
      let fresh: { keys: Tensor; values: Tensor } | undefined;
      if (last > N0) {
        fresh = { keys: s.keep(b.zeros([last - N0, D], 'bf16')), values: s.keep(b.zeros([last - N0, D], 'bf16')) };
        this.writeDequantized(layer, chunk.sequence, N0, last, fresh.keys, fresh.values, 0);
      }
      let dequantizedTo = N0; // scratch rows of compressed tokens below this hold their dequantized form
      const { queryHeads, kvHeads, headDim } = this.s.shape;
      for (const block of blocks) {
        if (block.visible > dequantizedTo && fresh) {
          for (const [dst, src] of [[keys, fresh.keys], [values, fresh.values]] as const) {
            b.writeRows(dst, rule.position(dequantizedTo), rowView(src, dequantizedTo - N0, block.visible - dequantizedTo));
          }
          dequantizedTo = block.visible;
        }
        const qRows = rowView(q, block.from - chunk.start, block.to - block.from);
        const o = s.keep(b.attention(qRows, keys, values, { queryHeads, kvHeads, headDim, qStart: block.from, kvLength: block.to }));
        b.writeRows(out, block.from - chunk.start, o);
      }
    });
  }

  /** Frees the scratch K/V (0.5 GiB at 128K for Llama-3.1-8B); another prompt chunk makes it again. */
  endPrompt(): void {
    this.scratch?.keys.dispose();
    this.scratch?.values.dispose();
    this.scratch = undefined;
    this.owner = undefined;
  }

  /** The scratch K/V [capacity, D], made once and kept until the prompt ends. */
  private prefillScratch(): { keys: Tensor; values: Tensor } {
    const D = this.s.shape.kvHeads * this.s.shape.headDim;
    this.scratch ??= { keys: this.backend.zeros([this.s.capacity, D], 'bf16'), values: this.backend.zeros([this.s.capacity, D], 'bf16') };
    return this.scratch;
  }

  /**
   * Rows [row, row + t1 − t0) (default: their positions) ← compressed tokens t0..t1−1 dequantized: keys rotated to
   * their positions, values as they are. In segments, so that a 128K prefix needs no prefix-sized temporaries:
   * values straight into their rows, keys through a pre-RoPE segment that the backend's rope op rotates.
   */
  private writeDequantized(layer: number, sequence: number, t0: number, t1: number, keys: Tensor, values: Tensor, row = this.s.rule.position(t0)): void {
    const b = this.backend;
    const D = this.s.shape.kvHeads * this.s.shape.headDim;
    for (let a = t0; a < t1; a += DEQUANT_SEGMENT) {
      const n = Math.min(DEQUANT_SEGMENT, t1 - a);
      const at = row + (a - t0);
      scoped((s) => {
        const kPre = s.keep(b.zeros([n, D], 'bf16'));
        this.source.dequantizeInto(layer, sequence, a, a + n, kPre, 0, values, at);
        const positions = s.keep(b.fromArray(Int32Array.from({ length: n }, (_, i) => this.s.rule.position(a + i)), [n], 'i32'));
        b.writeRows(keys, at, s.keep(b.rope(kPre, positions, this.s.options.rope)));
      });
    }
  }
}
