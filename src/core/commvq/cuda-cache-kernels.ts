import { i32, ptr, type CudaContextLike } from '../backend/cuda/kernels.js';
import { CommvqError } from '../errors.js';
import { packedCodeBytes } from './code-packing.js';

/**
 * Launchers of the kernels that store tokens into, and read them out of, a device-resident CommVQ cache
 * (kernels/commvq_pack.cu, kernels/commvq_dequant.cu; layouts as CodeAttentionBuffers in cuda-code-attention.ts).
 * Each works on one sequence's arrays: `keyCodes`, `keyNorms`, `valueBits`, `valueRho` are the device addresses of
 * that sequence's row 0 (for a batch, the caller adds b·capacity rows), and a call touches rows
 * [rowStart, rowStart + tokens) only. Every launcher checks its shape and pointers (CommvqError) before it launches,
 * and enqueues on the context's stream; nothing synchronizes. The CPU twin is CommvqCache.encodeBlock/dequantized.
 *
 *   launchPackKeys(ctx, { codes, n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, tokens: 128, rowStart: 256, capacity });
 */

const THREADS = 256;
const GEMM_TOKENS = 64; // kernels/commvq_bits_gemm.cuh TT
const GEMM_CHANNELS = 128; // TC
const GEMM_BITS = 64; // KB: N_c must be a multiple
const DQ_TOKENS = 8; // kernels/commvq_dequant.cu DQ_TOKENS

/** Rows of one sequence that a call writes or reads: [rowStart, rowStart + tokens) of `capacity`. */
export interface RowRange {
  /** tokens of this call (0: nothing is launched) */
  readonly tokens: number;
  readonly rowStart: number;
  /** rows in the sequence's arrays (their stride) */
  readonly capacity: number;
}

export interface KeyRowsShape extends RowRange {
  /** launchPackKeys: tokens between stages in `codes` (default `tokens`): codes of several sequences encoded at once */
  readonly codeStride?: number;
  /** R */
  readonly residuals: number;
  /** G = H_kv */
  readonly groups: number;
}

export interface ValueRowsShape extends RowRange {
  /** N_c: a multiple of 64 */
  readonly codeBits: number;
  /** D = H_kv·D_h: a multiple of 64 */
  readonly featDim: number;
}

function int(what: string, name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new CommvqError(`${what}: ${name} must be an integer ≥ ${min}, got ${v}`);
}

function checkRows(what: string, s: RowRange): void {
  int(what, 'tokens', s.tokens, 0);
  int(what, 'rowStart', s.rowStart, 0);
  int(what, 'capacity', s.capacity, 0);
  if (s.rowStart + s.tokens > s.capacity) {
    throw new CommvqError(`${what}: rows ${s.rowStart} + ${s.tokens} exceed the capacity of ${s.capacity} tokens`, 'grow the sequence\'s arrays first');
  }
}

function checkKeys(what: string, s: KeyRowsShape): void {
  checkRows(what, s);
  int(what, 'residuals', s.residuals, 1);
  int(what, 'groups', s.groups, 1);
}

function checkValues(what: string, s: ValueRowsShape): void {
  checkRows(what, s);
  int(what, 'codeBits', s.codeBits, GEMM_BITS);
  int(what, 'featDim', s.featDim, 64);
  if (s.codeBits % GEMM_BITS !== 0) throw new CommvqError(`${what}: N_c = ${s.codeBits} is not a multiple of ${GEMM_BITS}`);
  if (s.featDim % 64 !== 0) throw new CommvqError(`${what}: D = ${s.featDim} is not a multiple of 64 (H_kv·D_h with D_h 64 or 128)`);
}

/** Refuses null pointers, and those in `aligned` not on the given byte boundary. */
function checkPointers(what: string, p: Readonly<Record<string, bigint>>, aligned: Readonly<Record<string, number>> = {}): void {
  for (const [name, v] of Object.entries(p)) if (v === 0n) throw new CommvqError(`${what}: ${name} is a null pointer`);
  for (const [name, bytes] of Object.entries(aligned)) {
    if (p[name]! % BigInt(bytes) !== 0n) throw new CommvqError(`${what}: ${name} is not ${bytes}-byte aligned`);
  }
}

const at = (base: bigint, bytes: number): bigint => base + BigInt(bytes);

/**
 * Packs keys encoded by `encodeKeysOnDevice` into rows rowStart + t: codes i32 [R, G, tokens] → 12-bit codes
 * [r][g] per token (packCodes12), n2 f32 [tokens] → bf16 √n2 in keyNorms.
 *
 *   launchPackKeys(ctx, { codes: enc.codes, n2: enc.n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, tokens: 128, rowStart: 0, capacity: 4096 });
 */
export function launchPackKeys(
  ctx: CudaContextLike,
  p: { codes: bigint; n2: bigint; keyCodes: bigint; keyNorms: bigint },
  s: KeyRowsShape,
): void {
  const what = 'commvq_pack_keys';
  checkKeys(what, s);
  checkPointers(what, p, { codes: 4, n2: 4, keyNorms: 2 });
  if (s.codeStride !== undefined && !(Number.isInteger(s.codeStride) && s.codeStride >= s.tokens)) {
    throw new CommvqError(`${what}: codeStride ${s.codeStride} must be an integer ≥ tokens (${s.tokens})`);
  }
  if (s.tokens === 0) return;
  const rowBytes = packedCodeBytes(s.residuals * s.groups);
  ctx.launch(ctx.kernel('commvq_pack', 'commvq_pack_keys'), [Math.ceil(s.tokens / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(p.codes), ptr(p.n2), ptr(at(p.keyCodes, s.rowStart * rowBytes)), ptr(at(p.keyNorms, 2 * s.rowStart)),
    i32(s.tokens), i32(s.residuals * s.groups), i32(rowBytes), i32(s.codeStride ?? s.tokens),
  ]);
}

/** Bytes of the scratch `launchPackValues` needs for a shape (per-tile sums of squares, f32 [⌈D/128⌉, tokens]). */
export function packValuesWorkspaceBytes(s: Pick<ValueRowsShape, 'tokens' | 'featDim'>): number {
  return Math.max(4, Math.ceil(s.featDim / GEMM_CHANNELS) * s.tokens * 4);
}

/**
 * Packs value codes into rows rowStart + t: bits f32 [tokens, N_c] (0/1, as encodeValues returns) → N_c/8 bytes
 * LSB-first (packBits), and ρ′ = (ρ + 1e-6)/(‖b_t·E‖₂ + 1e-6) as bf16 into valueRho, with b_t·E summed in f32 from
 * the bf16 codebook E [N_c, D]. Three launches: pack the bits, per-tile ‖·‖² from the packed bits, then ρ′.
 * `workspace` (packValuesWorkspaceBytes bytes) is allocated per call unless given (give one inside a graph capture).
 *
 *   launchPackValues(ctx, { bits, rho, codebook, valueBits, valueRho }, { codeBits: 1024, featDim: 1024, tokens: 128, rowStart: 0, capacity });
 */
export function launchPackValues(
  ctx: CudaContextLike,
  p: { bits: bigint; rho: bigint; codebook: bigint; valueBits: bigint; valueRho: bigint; workspace?: bigint },
  s: ValueRowsShape,
): void {
  const what = 'commvq_pack_values';
  checkValues(what, s);
  const { workspace, ...buffers } = p;
  checkPointers(what, buffers, { bits: 4, rho: 4, codebook: 16, valueBits: 4, valueRho: 2 });
  if (workspace !== undefined) checkPointers(what, { workspace }, { workspace: 4 });
  if (s.tokens === 0) return;
  const rowBytes = s.codeBits / 8;
  const bits = at(p.valueBits, s.rowStart * rowBytes);
  const words = (s.tokens * s.codeBits) / 32;
  ctx.launch(ctx.kernel('commvq_pack', 'commvq_pack_value_bits'), [Math.ceil(words / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(p.bits), ptr(bits), i32(s.tokens), i32(s.codeBits),
  ]);
  const tiles = Math.ceil(s.featDim / GEMM_CHANNELS);
  const scratch = workspace === undefined ? ctx.alloc(packValuesWorkspaceBytes(s)) : undefined;
  const partial = workspace ?? scratch!.ptr;
  try {
    ctx.launch(ctx.kernel('commvq_pack', 'commvq_value_sumsq'), [Math.ceil(s.tokens / GEMM_TOKENS), tiles, 1], [THREADS, 1, 1], 0, [
      ptr(bits), ptr(p.codebook), ptr(partial), i32(s.tokens), i32(s.codeBits), i32(s.featDim),
    ]);
    ctx.launch(ctx.kernel('commvq_pack', 'commvq_value_rho'), [Math.ceil(s.tokens / THREADS), 1, 1], [THREADS, 1, 1], 0, [
      ptr(partial), ptr(p.rho), ptr(at(p.valueRho, 2 * s.rowStart)), i32(s.tokens), i32(tiles),
    ]);
  } finally {
    scratch?.free(); // the caching allocator hands it out again only to work queued after these launches
  }
}

/**
 * Dense pre-RoPE keys of rows [rowStart, rowStart + tokens): k̂ [tokens, G·D_h] bf16, HF layout, into `out`, from the
 * packed codes, the bf16 norms and θ f32 [R, G, 128, D_h/2]. Apply RoPE afterwards (the backend's rope op).
 *
 *   launchDequantKeys(ctx, { keyCodes, keyNorms, theta, out }, { residuals: 11, groups: 8, headDim: 128, tokens: 4096, rowStart: 0, capacity });
 */
export function launchDequantKeys(
  ctx: CudaContextLike,
  p: { keyCodes: bigint; keyNorms: bigint; theta: bigint; out: bigint },
  s: KeyRowsShape & { readonly headDim: number },
): void {
  const what = 'commvq_dequant_keys';
  checkKeys(what, s);
  if (s.headDim !== 64 && s.headDim !== 128) throw new CommvqError(`${what}: head_dim ${s.headDim} is not supported`, 'head_dim 64 and 128 are');
  checkPointers(what, p, { keyNorms: 2, theta: 4, out: 2 });
  if (s.tokens === 0) return;
  const RG = s.residuals * s.groups;
  const rowBytes = packedCodeBytes(RG);
  const shared = DQ_TOKENS * RG * 2;
  ctx.launch(ctx.kernel('commvq_dequant', 'commvq_dequant_keys'), [Math.ceil(s.tokens / DQ_TOKENS), 1, 1], [THREADS, 1, 1], shared, [
    ptr(at(p.keyCodes, s.rowStart * rowBytes)), ptr(at(p.keyNorms, 2 * s.rowStart)), ptr(p.theta), ptr(p.out),
    i32(s.tokens), i32(s.residuals), i32(s.groups), i32(s.headDim / 2), i32(rowBytes),
  ]);
}

/**
 * Dense values of rows [rowStart, rowStart + tokens): v̂ [tokens, D] bf16 = (b_t·E)·ρ′_t ⊙ (ls + 1e-6) into `out`,
 * from the packed bits, the bf16 ρ′, E bf16 [N_c, D] and ls f32 [D]; f32 accumulation, one rounding.
 *
 *   launchDequantValues(ctx, { valueBits, valueRho, codebook, scale, out }, { codeBits: 1024, featDim: 1024, tokens: 4096, rowStart: 0, capacity });
 */
export function launchDequantValues(
  ctx: CudaContextLike,
  p: { valueBits: bigint; valueRho: bigint; codebook: bigint; scale: bigint; out: bigint },
  s: ValueRowsShape,
): void {
  const what = 'commvq_dequant_values';
  checkValues(what, s);
  checkPointers(what, p, { valueBits: 4, valueRho: 2, codebook: 16, scale: 4, out: 8 });
  if (s.tokens === 0) return;
  ctx.launch(ctx.kernel('commvq_dequant', 'commvq_dequant_values'), [Math.ceil(s.tokens / GEMM_TOKENS), Math.ceil(s.featDim / GEMM_CHANNELS), 1], [THREADS, 1, 1], 0, [
    ptr(at(p.valueBits, (s.rowStart * s.codeBits) / 8)), ptr(at(p.valueRho, 2 * s.rowStart)), ptr(p.codebook), ptr(p.scale), ptr(p.out),
    i32(s.tokens), i32(s.codeBits), i32(s.featDim),
  ]);
}
