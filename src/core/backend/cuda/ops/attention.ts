import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { AttentionShape } from '../../backend.js';
import type { CudaTensor } from '../cuda-tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, ptr, type CudaContextLike, type DeviceInfo } from '../kernels.js';
import { alignedPtr, expectElements, tensorArg } from './tensor-args.js';

/**
 * Launchers of the causal GQA attention kernels (`kernels/attention_prefill.cu`, `kernels/attention_decode.cu`).
 * They take bf16 tensors in the Hugging Face layout, check the shape, choose grid, block and shared memory, and
 * enqueue on the context's stream:
 *   q [Tq, H_q·D_h], k and v [≥kvLength, H_kv·D_h], out [Tq, H_q·D_h] (all bf16, rows contiguous, 16-byte aligned).
 * Query row i sits at absolute position qStart + i and sees keys 0..qStart+i; D_h is 64 or 128.
 *
 * `launchAttention` picks the kernel: the split-K decode kernel when few query rows share a kv head (Tq·H_q/H_kv ≤
 * 32: decode steps, speculative or tiny chunks), the flash-attention prefill kernel otherwise.
 */

/** The attention shape of one launch: the backend's `AttentionShape` plus the number of query rows Tq. */
export interface AttentionLaunchShape extends AttentionShape {
  /** Tq, the rows of q and out */
  readonly queryRows: number;
}

/** The bf16 tensors of one attention launch (views allowed: e.g. rows of a larger cache). */
export interface AttentionTensors {
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  readonly out: Tensor;
}

/** Options of the decode kernel. */
export interface DecodeOptions {
  /**
   * i32 [2] on the device holding {qStart, kvLength}. When given the kernels read the lengths from it at run time, so
   * a launch captured into a CUDA graph stays right while the cache grows: update the tensor, replay the graph.
   * The shape's qStart and kvLength must then describe the capture-time values, and `maxKvLength` bounds the
   * lengths the tensor will ever hold (the grid and workspace are sized for it; units past kvLength exit at once).
   */
  readonly lengths?: Tensor;
  /** the largest kvLength `lengths` will hold (default: the shape's kvLength) */
  readonly maxKvLength?: number;
  /** keys per warp (a multiple of 32); default from the device and the length, see `decodePlan` */
  readonly unitKeys?: number;
}

/** The decode kernel's split of the keys: `nUnits` warps per kv head and query-row tile, `unitKeys` keys each. */
export interface DecodePlan {
  readonly unitKeys: number;
  readonly nUnits: number;
  /** warps per block (4 where shared memory allows) */
  readonly warps: number;
  /** 16-row tiles of the Tq·G query rows of one kv head */
  readonly rowTiles: number;
  readonly sharedBytes: number;
  /** bytes of the f32 partials: (m, l) pairs first, then the unnormalized outputs */
  readonly workspaceBytes: number;
  /** byte offset of the outputs in the workspace (16-byte aligned) */
  readonly partOffset: number;
}

// The prefill kernel's sizes are still written twice, here and in kernels/attention_prefill.cu; they are to be read
// from the source as the decode kernel's are.
const PREFILL = kernelConstants('attention_prefill', ['kBlockM', 'kThreads', 'kBlockN']);

/** Query rows per block of the switched prefill kernel (its kBlockM): a cache's W-blocks must be this long to use it. */
export function switchedBlockRows(): number {
  return PREFILL.kBlockM;
}
const DECODE = kernelConstants('attention_decode', ['kWarps', 'kTileKeys', 'kStages', 'kRows', 'kCombineThreads']);
/** Decode when at most this many query rows (Tq × GQA group) share one kv head: two m16 tiles. */
const decodeMaxGroupRows = (): number => 2 * DECODE.kRows;

/** True when `launchAttention` would use the decode kernel for this shape. */
export function usesDecodeKernel(shape: AttentionLaunchShape): boolean {
  return shape.queryRows * (shape.queryHeads / shape.kvHeads) <= decodeMaxGroupRows();
}

/**
 * Causal GQA attention on the GPU: the decode kernel for a few query rows, the prefill kernel otherwise.
 *
 *   // one decode step of Llama-3.1-8B at position 4095 (the new key/value row already written to the cache)
 *   launchAttention(ctx, { q, k: kCache, v: vCache, out },
 *     { queryRows: 1, queryHeads: 32, kvHeads: 8, headDim: 128, qStart: 4095, kvLength: 4096 });
 */
export function launchAttention(
  ctx: CudaContextLike,
  p: AttentionTensors,
  shape: AttentionLaunchShape,
  options: DecodeOptions = {},
): void {
  if (usesDecodeKernel(shape) || options.lengths !== undefined) decodeAttention(ctx, p, shape, options);
  else prefillAttention(ctx, p, shape);
}

/**
 * Flash-attention prefill: any Tq, qStart ≥ 0 (a chunk appended to a cache), kvLength ≥ qStart + Tq. Never
 * materializes the score matrix, so 32K+ prompts need no memory beyond q, k, v and out.
 *
 *   // a 2048-token chunk after 6144 cached tokens: q [2048, 4096], k/v cache [≥8192, 1024]
 *   prefillAttention(ctx, { q, k, v, out },
 *     { queryRows: 2048, queryHeads: 32, kvHeads: 8, headDim: 128, qStart: 6144, kvLength: 8192 });
 */
export function prefillAttention(ctx: CudaContextLike, p: AttentionTensors, shape: AttentionLaunchShape): void {
  checkShape(shape, 'prefillAttention');
  const t = checkTensors(ctx, p, shape, 'prefillAttention');
  const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D } = shape;
  const blocks = Math.ceil(Tq / PREFILL.kBlockM);
  if (blocks > 65535) throw new CommvqError(`prefillAttention: ${Tq} query rows exceed one launch (${65535 * PREFILL.kBlockM})`);
  const sharedBytes = (PREFILL.kBlockM + 4 * PREFILL.kBlockN) * D * 2; // Q tile + 2 stages of K and V tiles
  const kernel = ctx.kernel('attention_prefill', `attention_prefill_d${D}`);
  ctx.launch(kernel, [Hq, blocks, 1], [PREFILL.kThreads, 1, 1], sharedBytes, [
    ptr(t.q), ptr(t.k), ptr(t.v), ptr(t.out),
    i32(Tq), i32(Hq), i32(Hkv), i32(shape.qStart), i32(shape.kvLength), f32(1 / Math.sqrt(D)),
  ]);
}

/**
 * The strict CommVQ prompt's attention in one launch (attention_prefill_switch_*): query rows [qStart, qStart + Tq)
 * in blocks of 128 rows, each block one W-block of W = 128 (qStart on a block start); a block's queries see keys
 * before its first position from k/v (the scratch: the dequantized prefix, the sinks exact) and keys from its first
 * position on exact from kx/vx, whose row 0 is position `exactBase` (≤ qStart). The caller lays the blocks out.
 *
 *   // a chunk of 4096 prompt rows from position 8192: k, v the layer's scratch, kx, vx the chunk's own rows
 *   prefillAttentionSwitched(ctx, { q, k, v, kx, vx, out },
 *     { queryRows: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, qStart: 8192, kvLength: 12288 }, 8192);
 */
export function prefillAttentionSwitched(
  ctx: CudaContextLike,
  p: AttentionTensors & { readonly kx: Tensor; readonly vx: Tensor },
  shape: AttentionLaunchShape,
  exactBase: number,
): void {
  const op = 'prefillAttentionSwitched';
  checkShape(shape, op);
  const t = checkTensors(ctx, p, shape, op);
  if (!Number.isInteger(exactBase) || exactBase < 0 || exactBase > shape.qStart) throw new CommvqError(`${op}: exactBase ${exactBase} must lie in [0, qStart ${shape.qStart}]`);
  if (shape.qStart % PREFILL.kBlockM !== 0) throw new CommvqError(`${op}: qStart ${shape.qStart} is not a multiple of ${PREFILL.kBlockM}: the query blocks would not be W-blocks`);
  const exactRows = (shape.kvLength - exactBase) * shape.kvHeads * shape.headDim;
  const exact = (name: 'kx' | 'vx'): bigint => {
    const x = tensorArg(ctx, op, name, p[name], 'bf16');
    expectElements(op, name, x, exactRows);
    return alignedPtr(op, name, x, 16);
  };
  const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D } = shape;
  const blocks = Math.ceil(Tq / PREFILL.kBlockM);
  if (blocks > 65535) throw new CommvqError(`${op}: ${Tq} query rows exceed one launch (${65535 * PREFILL.kBlockM})`);
  const sharedBytes = (PREFILL.kBlockM + 4 * PREFILL.kBlockN) * D * 2;
  ctx.launch(ctx.kernel('attention_prefill', `attention_prefill_switch_d${D}`), [Hq, blocks, 1], [PREFILL.kThreads, 1, 1], sharedBytes, [
    ptr(t.q), ptr(t.k), ptr(t.v), ptr(exact('kx')), ptr(exact('vx')), ptr(t.out),
    i32(Tq), i32(Hq), i32(Hkv), i32(shape.qStart), i32(shape.kvLength), i32(exactBase), f32(1 / Math.sqrt(D)),
  ]);
}

/**
 * Split-K ("flash-decoding") attention for a few query rows over a long cache: each warp reads one slice of one kv
 * head's keys once for all the query heads of its GQA group, then a small kernel merges the slices. Scratch memory
 * for the partials comes from `ctx.alloc` and is returned once the launches are queued.
 *
 *   // graph-friendly decode: lengths = device int32[2] {qStart, kvLength}, rewritten before each replay
 *   decodeAttention(ctx, { q, k, v, out },
 *     { queryRows: 1, queryHeads: 32, kvHeads: 8, headDim: 128, qStart: 99, kvLength: 100 },
 *     { lengths, maxKvLength: 131072 });
 */
export function decodeAttention(
  ctx: CudaContextLike,
  p: AttentionTensors,
  shape: AttentionLaunchShape,
  options: DecodeOptions = {},
): void {
  checkShape(shape, 'decodeAttention');
  const t = checkTensors(ctx, p, shape, 'decodeAttention');
  const maxKv = options.maxKvLength ?? shape.kvLength;
  if (!Number.isInteger(maxKv) || maxKv < shape.kvLength) {
    throw new CommvqError(`decodeAttention: maxKvLength ${maxKv} is below kvLength ${shape.kvLength}`);
  }
  const lengths = options.lengths === undefined ? 0n : lengthsPtr(ctx, options.lengths);
  const plan = decodePlan(shape, ctx.info, options);
  const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D } = shape;
  const scratch = ctx.alloc(plan.workspaceBytes);
  const ml = scratch.ptr;
  const part = scratch.ptr + BigInt(plan.partOffset);
  try {
    const split = ctx.kernel('attention_decode', `attention_decode_split_d${D}`);
    ctx.launch(split, [plan.rowTiles, Math.ceil(plan.nUnits / plan.warps), Hkv], [32 * plan.warps, 1, 1], plan.sharedBytes, [
      ptr(t.q), ptr(t.k), ptr(t.v), ptr(part), ptr(ml),
      i32(Tq), i32(Hq), i32(Hkv), i32(shape.qStart), i32(shape.kvLength), f32(1 / Math.sqrt(D)),
      i32(plan.unitKeys), i32(plan.nUnits), ptr(lengths),
    ]);
    const combine = ctx.kernel('attention_decode', `attention_decode_combine_d${D}`);
    ctx.launch(combine, [Hq, Tq, 1], [DECODE.kCombineThreads, 1, 1], 0, [
      ptr(part), ptr(ml), ptr(t.out),
      i32(Tq), i32(Hq), i32(Hkv), i32(shape.qStart), i32(shape.kvLength), i32(plan.unitKeys), i32(plan.nUnits),
      ptr(lengths),
    ]);
  } finally {
    scratch.free(); // one stream: the next user of this block runs after these kernels
  }
}

/**
 * How the decode kernel splits the keys: units sized so that one wave of warps covers the whole GPU at the length
 * that matters, the current kvEnd, or for a launch with device-side lengths a quarter of `maxKvLength` (so the GPU
 * is still full from a quarter of the longest context on, and the combine reads at most ~4× that many partials).
 * Measured on an H100 (Llama-3.1-8B heads, graph replays): at 32K keys, units of 128/256/512/1024 keys ran at
 * 2.09/2.39/2.65/2.42 TB/s of K+V, at 128K units of 512/1024/2048 at 2.72/2.86/2.95 TB/s (copy: 2.9 TB/s); this
 * rule picks 512 and 2048.
 */
export function decodePlan(shape: AttentionLaunchShape, info: DeviceInfo, options: DecodeOptions = {}): DecodePlan {
  const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D } = shape;
  const { kTileKeys: tileKeys, kStages, kRows, kWarps } = DECODE;
  const rowTiles = Math.ceil((Tq * Hq) / Hkv / kRows);
  const warpBytes = kStages * 2 * tileKeys * D * 2;
  const warps = Math.min(kWarps, Math.floor(info.maxSharedPerBlockOptin / warpBytes));
  if (warps < 1) throw new CommvqError(`decodeAttention: ${info.name} has too little shared memory for D_h ${D}`);
  const kvEnd = Math.min(shape.kvLength, shape.qStart + Tq);
  // with device-side lengths the run-time kvEnd is only known to be ≤ maxKvLength
  const sizedFor = options.lengths !== undefined ? Math.max(options.maxKvLength ?? shape.kvLength, kvEnd) : kvEnd;
  let unitKeys = options.unitKeys;
  if (unitKeys === undefined) {
    const reference = options.lengths !== undefined ? Math.ceil(sizedFor / 4) : kvEnd;
    const blocksPerSm = Math.max(1, Math.floor(info.maxSharedPerBlockOptin / (warps * warpBytes)));
    const targetWarps = info.smCount * blocksPerSm * warps;
    const keys = Math.ceil((reference * Hkv * rowTiles) / targetWarps);
    unitKeys = Math.max(2 * tileKeys, Math.ceil(keys / tileKeys) * tileKeys);
  }
  if (!Number.isInteger(unitKeys) || unitKeys <= 0 || unitKeys % tileKeys !== 0) {
    throw new CommvqError(`decodeAttention: unitKeys ${unitKeys} must be a positive multiple of ${tileKeys}`);
  }
  const nUnits = Math.max(1, Math.ceil(sizedFor / unitKeys));
  if (Math.ceil(nUnits / warps) > 65535) throw new CommvqError(`decodeAttention: ${nUnits} units of ${unitKeys} keys exceed one launch`);
  const rows = Hkv * nUnits * ((Tq * Hq) / Hkv);
  const partOffset = Math.ceil((rows * 8) / 256) * 256;
  return { unitKeys, nUnits, warps, rowTiles, sharedBytes: warps * warpBytes, workspaceBytes: partOffset + rows * D * 4, partOffset };
}

function checkShape(s: AttentionLaunchShape, op: string): void {
  const ints: [string, number][] = [
    ['queryRows', s.queryRows], ['queryHeads', s.queryHeads], ['kvHeads', s.kvHeads], ['headDim', s.headDim],
    ['qStart', s.qStart], ['kvLength', s.kvLength],
  ];
  for (const [name, value] of ints) {
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new CommvqError(`${op}: ${name} ${value} is not a valid int32 count`);
  }
  if (s.queryRows < 1 || s.queryHeads < 1 || s.kvHeads < 1) throw new CommvqError(`${op}: empty shape ${JSON.stringify(s)}`);
  if (s.headDim !== 64 && s.headDim !== 128) {
    throw new CommvqError(`${op}: head dim ${s.headDim} is not supported`, 'the CUDA attention kernels are built for D_h 64 and 128');
  }
  if (s.queryHeads % s.kvHeads !== 0) throw new CommvqError(`${op}: ${s.queryHeads} query heads are not a multiple of ${s.kvHeads} kv heads`);
  if (s.kvLength < s.qStart + s.queryRows) {
    throw new CommvqError(
      `${op}: kvLength ${s.kvLength} < qStart ${s.qStart} + ${s.queryRows} query rows`,
      'write the new keys and values into the cache before attending to them',
    );
  }
  const elems = Math.max(s.queryRows * s.queryHeads, s.kvLength * s.kvHeads) * s.headDim;
  if (elems > 2 ** 40) throw new CommvqError(`${op}: tensors of ${elems} elements are too large`);
}

/** The device addresses of the four tensors, after checking dtype bf16, sizes, and 16-byte alignment. */
function checkTensors(ctx: CudaContextLike, p: AttentionTensors, s: AttentionLaunchShape, op: string): { q: bigint; k: bigint; v: bigint; out: bigint } {
  const rows = { q: s.queryRows * s.queryHeads, k: s.kvLength * s.kvHeads, v: s.kvLength * s.kvHeads, out: s.queryRows * s.queryHeads };
  const at = (name: keyof AttentionTensors): bigint => {
    const t: CudaTensor = tensorArg(ctx, op, name, p[name], 'bf16');
    expectElements(op, name, t, rows[name] * s.headDim);
    // cp.async copies 16 bytes at a time; rows are multiples of 128 bytes, so only the base needs checking
    return alignedPtr(op, name, t, 16);
  };
  return { q: at('q'), k: at('k'), v: at('v'), out: at('out') };
}

/** The device address of the lengths tensor: i32 with at least {qStart, kvLength}. */
function lengthsPtr(ctx: CudaContextLike, lengths: Tensor): bigint {
  const t = tensorArg(ctx, 'decodeAttention', 'lengths', lengths, 'i32');
  expectElements('decodeAttention', 'lengths', t, 2);
  return alignedPtr('decodeAttention', 'lengths', t, 4);
}
