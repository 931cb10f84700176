import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { CudaTensor } from '../cuda-tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { i32, ptr, type CudaContextLike } from '../kernels.js';
import { alignedPtr, expectElements, intArg, tensorArg } from './tensor-args.js';
import { packedCodeBytes } from '../../../tensor/code-packing.js';

/**
 * Launchers of the kernels that store tokens into, and read them out of, a device-resident CommVQ cache
 * (kernels/commvq_pack.cu, kernels/commvq_dequant.cu; the layouts of code-packing.ts). The cache's packed arrays of
 * one layer are [B, capacity, ...] tensors (views of one allocation are fine): a call touches rows
 * [rowStart, rowStart + tokens) of sequence `sequence` only, and computes their addresses itself. Every launcher checks
 * dtypes, shapes and alignment (CommvqError) before it launches, and enqueues on the context's stream; nothing
 * synchronizes. The CPU twin is CommvqCache.encodeBlock/dequantized.
 *
 *   launchPackKeys(ctx, { codes, n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, sequence: 0, rowStart: 256, tokens: 128 });
 */

const GEMM = kernelConstants('commvq_bits_gemm.cuh', ['TT', 'TC', 'KB', 'THREADS']);
const DEQUANT = kernelConstants('commvq_dequant', ['DQ_TOKENS']);

/** Threads per block of the one-item-per-thread kernels (pack keys, pack bits, ρ′) and of the key dequant. */
const THREADS = 256;

/** Rows of one sequence that a call writes or reads: [rowStart, rowStart + tokens) of sequence `sequence`. */
export interface CacheRows {
  /** the sequence: index into dimension 0 of the packed arrays */
  readonly sequence: number;
  readonly rowStart: number;
  /** tokens of this call (0: nothing is launched) */
  readonly tokens: number;
}

export interface KeyRows extends CacheRows {
  /** R */
  readonly residuals: number;
  /** G = H_kv */
  readonly groups: number;
}

/**
 * The address of row rowStart of the sequence in a packed array: u8 [B, capacity, rowBytes] or bf16 [B, capacity],
 * checked against the call's rows; the array must start on an `align`-byte boundary (the kernels' loads).
 */
function packedArray(ctx: CudaContextLike, op: string, name: string, t: Tensor, dtype: 'u8' | 'bf16', rowBytes: number | undefined, align: number, s: CacheRows): { base: bigint; capacity: number } {
  const c = tensorArg(ctx, op, name, t, dtype, rowBytes === undefined ? [-1, -1] : [-1, -1, rowBytes]);
  const [B, capacity] = c.shape as [number, number];
  intArg(op, 'sequence', s.sequence, 0);
  intArg(op, 'rowStart', s.rowStart, 0);
  intArg(op, 'tokens', s.tokens, 0);
  if (s.sequence >= B) throw new CommvqError(`${op}: sequence ${s.sequence} of a cache of ${B}`);
  if (s.rowStart + s.tokens > capacity) {
    throw new CommvqError(`${op}: rows ${s.rowStart} + ${s.tokens} exceed the capacity of ${capacity} tokens`, 'grow the sequence\'s arrays first');
  }
  const bytes = rowBytes ?? 2;
  return { base: alignedPtr(op, name, c, align) + BigInt((s.sequence * capacity + s.rowStart) * bytes), capacity };
}

/** The value codebook E bf16 [N_c, D]: N_c a multiple of the bit step, D of 64. */
function codebookArg(ctx: CudaContextLike, op: string, codebook: Tensor): { E: CudaTensor; codeBits: number; featDim: number } {
  const E = tensorArg(ctx, op, 'codebook', codebook, 'bf16', [-1, -1]);
  const [codeBits, featDim] = E.shape as [number, number];
  if (codeBits < GEMM.KB || codeBits % GEMM.KB !== 0) throw new CommvqError(`${op}: N_c = ${codeBits} is not a multiple of ${GEMM.KB}`);
  if (featDim < 64 || featDim % 64 !== 0) throw new CommvqError(`${op}: D = ${featDim} is not a multiple of 64 (H_kv·D_h with D_h 64 or 128)`);
  alignedPtr(op, 'codebook', E, 16);
  return { E, codeBits, featDim };
}

/** The value codebook and a sequence's packed value arrays: bits u8 [B, capacity, N_c/8], ρ′ bf16 [B, capacity]. */
function valueArrays(ctx: CudaContextLike, op: string, p: { codebook: Tensor; valueBits: Tensor; valueRho: Tensor }, s: CacheRows) {
  const { E, codeBits, featDim } = codebookArg(ctx, op, p.codebook);
  const valueBits = packedArray(ctx, op, 'valueBits', p.valueBits, 'u8', codeBits / 8, 4, s);
  const valueRho = packedArray(ctx, op, 'valueRho', p.valueRho, 'bf16', undefined, 2, s);
  return { E, codeBits, featDim, valueBits, valueRho };
}

/**
 * Packs encoded keys into rows rowStart + t of a sequence: tokens [from, from + tokens) of codes i32 [R, G, m] (as
 * `encodeKeysOnDevice` writes them) → 12-bit codes [r][g] per token in keyCodes u8 [B, capacity, packedCodeBytes(R·G)],
 * n2 f32 [m] → bf16 √n2 in keyNorms bf16 [B, capacity].
 *
 *   launchPackKeys(ctx, { codes: enc.codes, n2: enc.n2, keyCodes, keyNorms }, { residuals: 11, groups: 8, sequence: 0, rowStart: 0, tokens: 128 });
 */
export function launchPackKeys(
  ctx: CudaContextLike,
  p: { codes: Tensor; n2: Tensor; keyCodes: Tensor; keyNorms: Tensor },
  s: KeyRows & { readonly from?: number },
): void {
  const op = 'commvq_pack_keys';
  intArg(op, 'residuals', s.residuals, 1);
  intArg(op, 'groups', s.groups, 1);
  const RG = s.residuals * s.groups;
  const rowBytes = packedCodeBytes(RG);
  const keyCodes = packedArray(ctx, op, 'keyCodes', p.keyCodes, 'u8', rowBytes, 1, s);
  const keyNorms = packedArray(ctx, op, 'keyNorms', p.keyNorms, 'bf16', undefined, 2, s);
  const codes = tensorArg(ctx, op, 'codes', p.codes, 'i32', [s.residuals, s.groups, -1]);
  const m = codes.shape[2]!;
  const n2 = tensorArg(ctx, op, 'n2', p.n2, 'f32', [m]);
  const from = s.from ?? 0;
  intArg(op, 'from', from, 0);
  if (from + s.tokens > m) throw new CommvqError(`${op}: tokens ${from} + ${s.tokens} of codes encoded for ${m}`);
  const codesAt = alignedPtr(op, 'codes', codes, 4) + BigInt(from * 4);
  const n2At = alignedPtr(op, 'n2', n2, 4) + BigInt(from * 4);
  if (s.tokens === 0) return;
  ctx.launch(ctx.kernel('commvq_pack', 'commvq_pack_keys'), [Math.ceil(s.tokens / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(codesAt), ptr(n2At), ptr(keyCodes.base), ptr(keyNorms.base), i32(s.tokens), i32(RG), i32(rowBytes), i32(m),
  ]);
}

/** Floats of the scratch `launchPackValues` needs (per-tile sums of squares, f32 [⌈D/128⌉, tokens]). */
export function packValuesWorkspaceFloats(s: { tokens: number; featDim: number }): number {
  return Math.max(1, Math.ceil(s.featDim / GEMM.TC) * s.tokens);
}

/**
 * Packs value codes into rows rowStart + t of a sequence: bits f32 [tokens, N_c] (0/1, as encodeValues returns) →
 * N_c/8 bytes LSB-first (packBits) in valueBits u8 [B, capacity, N_c/8], and ρ′ = (ρ + 1e-6)/(‖b_t·E‖₂ + 1e-6) of
 * rho f32 [tokens] as bf16 into valueRho bf16 [B, capacity], with b_t·E summed in f32 from the codebook E bf16
 * [N_c, D]. Three launches: pack the bits, per-tile ‖·‖² from the packed bits, then ρ′. `workspace` (f32 of
 * packValuesWorkspaceFloats) is allocated per call unless given (give one inside a graph capture).
 *
 *   launchPackValues(ctx, { bits, rho, codebook, valueBits, valueRho }, { sequence: 0, rowStart: 0, tokens: 128 });
 */
export function launchPackValues(
  ctx: CudaContextLike,
  p: { bits: Tensor; rho: Tensor; codebook: Tensor; valueBits: Tensor; valueRho: Tensor; workspace?: Tensor },
  s: CacheRows,
): void {
  const op = 'commvq_pack_values';
  const arrays = valueArrays(ctx, op, p, s);
  const { codeBits, valueBits } = arrays;
  const bits = tensorArg(ctx, op, 'bits', p.bits, 'f32', [s.tokens, codeBits]);
  const bitsAt = alignedPtr(op, 'bits', bits, 4);
  const rho = rhoArgs(ctx, op, p, arrays.featDim, s);
  if (s.tokens === 0) return;
  const words = (s.tokens * codeBits) / 32;
  ctx.launch(ctx.kernel('commvq_pack', 'commvq_pack_value_bits'), [Math.ceil(words / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(bitsAt), ptr(valueBits.base), i32(s.tokens), i32(codeBits),
  ]);
  launchValueRho(ctx, arrays, rho, s);
}

/**
 * launchPackValues for the argmax encoder, from its logits: bits = the first largest of ℓ + b per 4-way group of
 * logits f32 [tokens, 4·n_e] and bias f32 [4·n_e] (value_gumbel_bits without noise), packed straight into valueBits;
 * then ρ′ as launchPackValues makes it. No [tokens, N_c] f32 bits on the way.
 *
 *   launchPackValueArgmax(ctx, { logits, bias: b2, rho, codebook, valueBits, valueRho }, { sequence: 0, rowStart: 0, tokens: 4096 });
 */
export function launchPackValueArgmax(
  ctx: CudaContextLike,
  p: { logits: Tensor; bias: Tensor; rho: Tensor; codebook: Tensor; valueBits: Tensor; valueRho: Tensor; workspace?: Tensor },
  s: CacheRows,
): void {
  const op = 'commvq_pack_value_argmax';
  const arrays = valueArrays(ctx, op, p, s);
  const { codeBits, valueBits } = arrays;
  const logits = tensorArg(ctx, op, 'logits', p.logits, 'f32', [s.tokens, 2 * codeBits]);
  const bias = tensorArg(ctx, op, 'bias', p.bias, 'f32');
  expectElements(op, 'bias', bias, 2 * codeBits);
  const [logitsAt, biasAt] = [alignedPtr(op, 'logits', logits, 16), alignedPtr(op, 'bias', bias, 16)];
  const rho = rhoArgs(ctx, op, p, arrays.featDim, s);
  if (s.tokens === 0) return;
  const words = (s.tokens * codeBits) / 32;
  ctx.launch(ctx.kernel('commvq_pack', 'commvq_pack_value_argmax'), [Math.ceil(words / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(logitsAt), ptr(biasAt), ptr(valueBits.base), i32(s.tokens), i32(codeBits),
  ]);
  launchValueRho(ctx, arrays, rho, s);
}

/** The checked ρ and workspace of a pack call (their sizes follow the rows and the codebook). */
function rhoArgs(ctx: CudaContextLike, op: string, p: { rho: Tensor; workspace?: Tensor }, featDim: number, s: CacheRows) {
  const rho = tensorArg(ctx, op, 'rho', p.rho, 'f32');
  expectElements(op, 'rho', rho, s.tokens);
  const floats = packValuesWorkspaceFloats({ tokens: s.tokens, featDim });
  const given = p.workspace === undefined ? undefined : tensorArg(ctx, op, 'workspace', p.workspace, 'f32');
  if (given) expectElements(op, 'workspace', given, floats);
  return { rhoAt: alignedPtr(op, 'rho', rho, 4), givenAt: given && alignedPtr(op, 'workspace', given, 4), floats };
}

/** ρ′ of the rows just packed: per-tile ‖b_t·E‖² from the packed bits, then ρ′ = (ρ + 1e-6)/(‖b_t·E‖ + 1e-6) as bf16. */
function launchValueRho(ctx: CudaContextLike, a: ReturnType<typeof valueArrays>, r: ReturnType<typeof rhoArgs>, s: CacheRows): void {
  const { E, codeBits, featDim, valueBits, valueRho } = a;
  const tiles = Math.ceil(featDim / GEMM.TC);
  const scratch = r.givenAt === undefined ? ctx.alloc(r.floats * 4) : undefined;
  const partial = r.givenAt ?? scratch!.ptr;
  try {
    ctx.launch(ctx.kernel('commvq_pack', 'commvq_value_sumsq'), [Math.ceil(s.tokens / GEMM.TT), tiles, 1], [GEMM.THREADS, 1, 1], 0, [
      ptr(valueBits.base), ptr(E.ptr), ptr(partial), i32(s.tokens), i32(codeBits), i32(featDim),
    ]);
    ctx.launch(ctx.kernel('commvq_pack', 'commvq_value_rho'), [Math.ceil(s.tokens / THREADS), 1, 1], [THREADS, 1, 1], 0, [
      ptr(partial), ptr(r.rhoAt), ptr(valueRho.base), i32(s.tokens), i32(tiles),
    ]);
  } finally {
    scratch?.free(); // the caching allocator hands it out again only to work queued after these launches
  }
}

/**
 * Dense pre-RoPE keys of rows [rowStart, rowStart + tokens) of a sequence: k̂ bf16 [tokens, G·D_h], HF layout, into
 * `out`, from the packed codes, the bf16 norms and θ f32 of R·G·128·(D_h/2) elements ([R, G, 128, D_h/2]). Apply RoPE
 * afterwards (the backend's rope op).
 *
 *   launchDequantKeys(ctx, { keyCodes, keyNorms, theta, out }, { residuals: 11, groups: 8, headDim: 128, sequence: 0, rowStart: 0, tokens: 4096 });
 */
export function launchDequantKeys(
  ctx: CudaContextLike,
  p: { keyCodes: Tensor; keyNorms: Tensor; theta: Tensor; out: Tensor },
  s: KeyRows & { readonly headDim: number },
): void {
  const op = 'commvq_dequant_keys';
  intArg(op, 'residuals', s.residuals, 1);
  intArg(op, 'groups', s.groups, 1);
  if (s.headDim !== 64 && s.headDim !== 128) throw new CommvqError(`${op}: head_dim ${s.headDim} is not supported`, 'head_dim 64 and 128 are');
  const RG = s.residuals * s.groups;
  const rowBytes = packedCodeBytes(RG);
  const keyCodes = packedArray(ctx, op, 'keyCodes', p.keyCodes, 'u8', rowBytes, 1, s);
  const keyNorms = packedArray(ctx, op, 'keyNorms', p.keyNorms, 'bf16', undefined, 2, s);
  const theta = tensorArg(ctx, op, 'theta', p.theta, 'f32');
  expectElements(op, 'theta', theta, RG * 128 * (s.headDim / 2));
  const out = tensorArg(ctx, op, 'out', p.out, 'bf16', [s.tokens, s.groups * s.headDim]);
  const [thetaAt, outAt] = [alignedPtr(op, 'theta', theta, 4), alignedPtr(op, 'out', out, 2)];
  if (s.tokens === 0) return;
  const shared = DEQUANT.DQ_TOKENS * RG * 2;
  ctx.launch(ctx.kernel('commvq_dequant', 'commvq_dequant_keys'), [Math.ceil(s.tokens / DEQUANT.DQ_TOKENS), 1, 1], [THREADS, 1, 1], shared, [
    ptr(keyCodes.base), ptr(keyNorms.base), ptr(thetaAt), ptr(outAt),
    i32(s.tokens), i32(s.residuals), i32(s.groups), i32(s.headDim / 2), i32(rowBytes),
  ]);
}

/**
 * Dense values of rows [rowStart, rowStart + tokens) of a sequence: v̂ bf16 [tokens, D] = (b_t·E)·ρ′_t ⊙ (ls + 1e-6)
 * into `out`, from the packed bits, the bf16 ρ′, E bf16 [N_c, D] and ls f32 [D]; f32 accumulation, one rounding.
 *
 *   launchDequantValues(ctx, { valueBits, valueRho, codebook, scale, out }, { sequence: 0, rowStart: 0, tokens: 4096 });
 */
export function launchDequantValues(
  ctx: CudaContextLike,
  p: { valueBits: Tensor; valueRho: Tensor; codebook: Tensor; scale: Tensor; out: Tensor },
  s: CacheRows,
): void {
  const op = 'commvq_dequant_values';
  const { E, codeBits, featDim, valueBits, valueRho } = valueArrays(ctx, op, p, s);
  const scale = tensorArg(ctx, op, 'scale', p.scale, 'f32');
  expectElements(op, 'scale', scale, featDim);
  const out = tensorArg(ctx, op, 'out', p.out, 'bf16', [s.tokens, featDim]);
  const [scaleAt, outAt] = [alignedPtr(op, 'scale', scale, 4), alignedPtr(op, 'out', out, 8)];
  if (s.tokens === 0) return;
  ctx.launch(ctx.kernel('commvq_dequant', 'commvq_dequant_values'), [Math.ceil(s.tokens / GEMM.TT), Math.ceil(featDim / GEMM.TC), 1], [GEMM.THREADS, 1, 1], 0, [
    ptr(valueBits.base), ptr(valueRho.base), ptr(E.ptr), ptr(scaleAt), ptr(outAt),
    i32(s.tokens), i32(codeBits), i32(featDim),
  ]);
}
