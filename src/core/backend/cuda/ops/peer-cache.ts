import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, ptr, type CudaContextLike, type DeviceInfo } from '../kernels.js';
import { alignedPtr, expectElements, intArg, tensorArg } from './tensor-args.js';

/**
 * Launchers of the peer caches' kernels (int4/int2, fp8, KIVI): quantization of new tokens
 * (kernels/peer_quantize.cu), dequantization back to bf16 rows (kernels/peer_dequantize.cu), and decode attention
 * fused with dequantization (kernels/peer_attention_decode.cu, merged by attention_decode.cu's combine kernel).
 * A part is one layer's keys or values of one sequence; its layouts are those of kernels/peer_formats.cuh, W = H_kv·D_h:
 *   token   codes u8 [cap, W·bits/8], scales and zeros f16 [cap, W/group]   (int4/int2, KIVI values)
 *   channel codes u8 [cap, W·bits/8], scales and zeros f16 [cap/group, W]   (KIVI keys)
 *   fp8     codes u8 [cap, W] (e4m3), scales f32 [cap, H_kv]                (fp8)
 * The CPU twins are quantizeAffine / dequantizeAffine (quant/affine-groups.ts) and quantizeFp8PerHead /
 * dequantizeFp8PerHead (quant/fp8-e4m3.ts); the attention's is the CPU caches' dequantize-then-attend.
 *
 *   launchPeerQuantize(ctx, part, { a: exactK, aBase: 128, aMod: 0, split: 255 }, 128, 128, heads);   // flush a block
 */

export type PeerLayout = 'token' | 'channel' | 'fp8';

export interface PeerFormat {
  readonly layout: PeerLayout;
  /** code bits: 1, 2 (KIVI, int2), 4 (int4), 8 (fp8) */
  readonly bits: 1 | 2 | 4 | 8;
  /** channels (token layout) or tokens (channel layout) per group: a power of two; fp8: D_h (a scale per head) */
  readonly group: number;
}

/** One layer's keys or values of one sequence on the device. */
export interface PeerPart {
  readonly format: PeerFormat;
  readonly codes: Tensor;
  readonly scales: Tensor;
  /** affine layouts only */
  readonly zeros?: Tensor;
}

/** The geometry every launch needs. */
export interface PeerHeads {
  readonly kvHeads: number; // H_kv
  readonly headDim: number; // D_h
}

/**
 * Where a quantization reads its rows, by absolute position p: p ≥ split from `b` (row p − split: the step's own rows),
 * the others from `a` (an exact tail or ring) at slot (p − aBase) mod aMod, aMod = 0 meaning no wrap.
 */
export interface PeerRows {
  readonly a: Tensor;
  readonly aBase: number;
  readonly aMod: number;
  readonly split: number;
  readonly b?: Tensor;
}

/** A part as an attention reads it: codes for positions < quantized, exact rows at slot (p − exactBase) [mod exactMod] after. */
export interface PeerAttendPart {
  readonly part: PeerPart;
  readonly quantized: number;
  readonly exact: Tensor;
  readonly exactBase: number;
  readonly exactMod: number;
}

/** The kernels' name for a cache's pair of formats. */
export type PeerKernelKind = 'int4' | 'int2' | 'kivi2' | 'kivi1' | 'fp8';

const DECODE = kernelConstants('peer_attention_decode', ['kWarps']);
const COMBINE = kernelConstants('attention_decode', ['kCombineThreads']);
const THREADS = 256;

const LAYOUT_CODE: Record<PeerLayout, number> = { token: 0, channel: 1, fp8: 2 };

/** log2 of a power-of-two group. */
function groupShift(op: string, f: PeerFormat): number {
  const s = Math.log2(f.group);
  if (!Number.isInteger(s) || s < 0) throw new CommvqError(`${op}: group ${f.group} is not a power of two`);
  return s;
}

/** Rows of codes, scales and zeros the part must hold for `rows` tokens, checked; returns their addresses. */
function partArgs(ctx: CudaContextLike, op: string, p: PeerPart, rows: number, h: PeerHeads): { codes: bigint; scales: bigint; zeros: bigint } {
  const W = h.kvHeads * h.headDim;
  const f = p.format;
  const codes = tensorArg(ctx, op, 'codes', p.codes, 'u8');
  expectElements(op, 'codes', codes, (rows * W * f.bits) / 8);
  if (f.layout === 'fp8') {
    if (f.bits !== 8) throw new CommvqError(`${op}: fp8 codes are 8 bits, not ${f.bits}`);
    const scales = tensorArg(ctx, op, 'scales', p.scales, 'f32');
    expectElements(op, 'scales', scales, rows * h.kvHeads);
    return { codes: alignedPtr(op, 'codes', codes, 16), scales: alignedPtr(op, 'scales', scales, 4), zeros: 0n };
  }
  if (!p.zeros) throw new CommvqError(`${op}: an affine part needs zeros`);
  const groups = f.layout === 'token' ? (rows * W) / f.group : Math.ceil(rows / f.group) * W;
  const scales = tensorArg(ctx, op, 'scales', p.scales, 'f16');
  const zeros = tensorArg(ctx, op, 'zeros', p.zeros, 'f16');
  expectElements(op, 'scales', scales, groups);
  expectElements(op, 'zeros', zeros, groups);
  return { codes: alignedPtr(op, 'codes', codes, 16), scales: alignedPtr(op, 'scales', scales, 4), zeros: alignedPtr(op, 'zeros', zeros, 4) };
}

/**
 * Quantizes positions [p0, p0 + T) of one sequence into `part`, reading them through `rows`. Channel layout: p0 and T
 * multiples of the group (KIVI flushes whole blocks). Nothing is launched for T = 0.
 *
 *   // a prompt of 300 tokens into an int4 part: every row from the step's keys
 *   launchPeerQuantize(ctx, part, { a: k, aBase: 0, aMod: 0, split: 0, b: k }, 0, 300, heads);
 */
export function launchPeerQuantize(ctx: CudaContextLike, part: PeerPart, rows: PeerRows, p0: number, T: number, h: PeerHeads): void {
  const op = 'launchPeerQuantize';
  intArg(op, 'p0', p0, 0);
  intArg(op, 'T', T, 0);
  if (T === 0) return;
  const f = part.format;
  if (f.layout === 'channel' && (p0 % f.group !== 0 || T % f.group !== 0)) {
    throw new CommvqError(`${op}: tokens ${p0}..${p0 + T} are not whole groups of ${f.group}`);
  }
  const W = h.kvHeads * h.headDim;
  const t = partArgs(ctx, op, part, p0 + T, h);
  const a = alignedPtr(op, 'rows.a', tensorArg(ctx, op, 'rows.a', rows.a, 'bf16'), 2);
  const b = rows.b ? alignedPtr(op, 'rows.b', tensorArg(ctx, op, 'rows.b', rows.b, 'bf16'), 2) : a;
  if (rows.b) expectElements(op, 'rows.b', rows.b, (p0 + T - Math.max(rows.split, p0)) * W);
  const src = [ptr(a), i32(rows.aBase), i32(rows.aMod), i32(rows.b ? rows.split : p0 + T), ptr(b), i32(p0), i32(T)];
  if (f.layout === 'fp8') {
    const warps = T * h.kvHeads;
    ctx.launch(ctx.kernel('peer_quantize', 'peer_fp8_quantize'), [Math.ceil((warps * 32) / THREADS), 1, 1], [THREADS, 1, 1], 0, [
      ...src, i32(h.kvHeads), i32(h.headDim), ptr(t.codes), ptr(t.scales),
    ]);
    return;
  }
  const shift = groupShift(op, f);
  const common = [...src, i32(W), i32(LAYOUT_CODE[f.layout]), i32(f.bits), i32(shift)];
  const groups = (T * W) / f.group;
  ctx.launch(ctx.kernel('peer_quantize', 'peer_affine_scales'), [Math.ceil(groups / THREADS), 1, 1], [THREADS, 1, 1], 0, [...common, ptr(t.scales), ptr(t.zeros)]);
  const bytes = (T * W * f.bits) / 8;
  ctx.launch(ctx.kernel('peer_quantize', 'peer_affine_codes'), [Math.ceil(bytes / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ...common, ptr(t.scales), ptr(t.zeros), ptr(t.codes),
  ]);
}

/**
 * Dequantizes positions [0, n) of `part` into rows [0, n) of out: bf16 [≥n, H_kv·D_h].
 *
 *   launchPeerDequantize(ctx, part, 4096, scratchK, heads);   // the codes a second prompt chunk attends over
 */
export function launchPeerDequantize(ctx: CudaContextLike, part: PeerPart, n: number, out: Tensor, h: PeerHeads): void {
  const op = 'launchPeerDequantize';
  intArg(op, 'n', n, 0);
  if (n === 0) return;
  const W = h.kvHeads * h.headDim;
  const t = partArgs(ctx, op, part, n, h);
  const o = tensorArg(ctx, op, 'out', out, 'bf16');
  expectElements(op, 'out', o, n * W);
  const f = part.format;
  const shift = f.layout === 'fp8' ? 0 : groupShift(op, f);
  ctx.launch(ctx.kernel('peer_dequantize', 'peer_dequantize'), [Math.ceil((n * W) / THREADS), 1, 1], [THREADS, 1, 1], 0, [
    ptr(t.codes), ptr(t.scales), ptr(t.zeros), i32(n), i32(h.kvHeads), i32(h.headDim), i32(LAYOUT_CODE[f.layout]), i32(f.bits), i32(shift),
    ptr(alignedPtr(op, 'out', o, 2)),
  ]);
}

/** The shape of one fused decode launch: one query token over the n keys of one sequence. */
export interface PeerDecodeShape extends PeerHeads {
  readonly queryHeads: number; // H_q
  /** keys (and values) held, the query's own included */
  readonly n: number;
}

/** How the fused decode kernel splits the keys: units of `unitKeys` keys, 4 per block. */
export interface PeerDecodePlan {
  readonly unitKeys: number;
  readonly nUnits: number;
  readonly workspaceBytes: number;
  readonly partOffset: number;
}

/**
 * Units sized so that one wave of 16 warps per SM covers all kv heads (at least 64 keys per unit: fewer would make
 * the combine kernel the larger cost).
 */
export function peerDecodePlan(shape: PeerDecodeShape, info: Pick<DeviceInfo, 'smCount'>, unitKeys?: number): PeerDecodePlan {
  const { n, kvHeads: Hkv, queryHeads: Hq, headDim: D } = shape;
  const keys = Math.ceil((n * Hkv) / (info.smCount * 16));
  const u = unitKeys ?? Math.max(64, Math.ceil(keys / 32) * 32);
  if (!Number.isInteger(u) || u <= 0 || u % 32 !== 0) throw new CommvqError(`peerDecodeAttention: unitKeys ${u} must be a positive multiple of 32`);
  const nUnits = Math.max(1, Math.ceil(n / u));
  if (Math.ceil(nUnits / DECODE.kWarps) > 0x7fffffff) throw new CommvqError(`peerDecodeAttention: ${nUnits} units exceed one launch`);
  const rows = Hkv * nUnits * (Hq / Hkv);
  const partOffset = Math.ceil((rows * 8) / 256) * 256;
  return { unitKeys: u, nUnits, partOffset, workspaceBytes: partOffset + rows * D * 4 };
}

/**
 * Attention of one decode query q [1, H_q·D_h] bf16 over a peer cache's n keys, dequantizing inside the kernel; writes
 * out [1, H_q·D_h] bf16. GQA ratios up to 8, D_h 64 or 128; token-layout keys need groups of ≥ 32 channels.
 *
 *   peerDecodeAttention(ctx, 'int4', q, out, keys, values, { queryHeads: 32, kvHeads: 8, headDim: 128, n: 32768 });
 */
export function peerDecodeAttention(
  ctx: CudaContextLike,
  kind: PeerKernelKind,
  q: Tensor,
  out: Tensor,
  keys: PeerAttendPart,
  values: PeerAttendPart,
  shape: PeerDecodeShape,
  unitKeys?: number,
): void {
  const op = 'peerDecodeAttention';
  const { queryHeads: Hq, kvHeads: Hkv, headDim: D, n } = shape;
  intArg(op, 'n', n, 1);
  if (D !== 64 && D !== 128) throw new CommvqError(`${op}: head dim ${D} is not supported`, 'the peer decode kernels are built for D_h 64 and 128');
  if (Hq % Hkv !== 0 || Hq / Hkv > 8) throw new CommvqError(`${op}: ${Hq} query heads over ${Hkv} kv heads: the kernels serve GQA ratios 1 to 8`);
  if (keys.part.format.layout === 'token' && keys.part.format.group < 32) throw new CommvqError(`${op}: token-layout keys need groups of ≥ 32 channels, not ${keys.part.format.group}`);
  const qt = tensorArg(ctx, op, 'q', q, 'bf16');
  const ot = tensorArg(ctx, op, 'out', out, 'bf16');
  expectElements(op, 'q', qt, Hq * D);
  expectElements(op, 'out', ot, Hq * D);
  const W = Hkv * D;
  const partArgsOf = (name: string, p: PeerAttendPart) => {
    if (!Number.isInteger(p.quantized) || p.quantized < 0 || p.quantized > n) throw new CommvqError(`${op}: ${name} quantized ${p.quantized} outside 0..${n}`);
    const t = partArgs(ctx, `${op} ${name}`, p.part, p.quantized, shape);
    const x = tensorArg(ctx, op, `${name}.exact`, p.exact, 'bf16');
    const slots = p.exactMod > 0 ? Math.min(p.exactMod, n - p.quantized) : n - p.exactBase;
    expectElements(op, `${name}.exact`, x, Math.max(0, slots) * W);
    const shift = p.part.format.layout === 'fp8' ? 0 : groupShift(op, p.part.format);
    return [ptr(t.codes), ptr(t.scales), ptr(t.zeros), i32(shift), i32(p.quantized), ptr(alignedPtr(op, `${name}.exact`, x, 16)), i32(p.exactBase), i32(p.exactMod)];
  };
  const plan = peerDecodePlan(shape, ctx.info, unitKeys);
  const G = Hq / Hkv;
  const scratch = ctx.alloc(plan.workspaceBytes);
  const ml = scratch.ptr;
  const part = scratch.ptr + BigInt(plan.partOffset);
  try {
    const split = ctx.kernel('peer_attention_decode', `peer_decode_${kind}_d${D}_g${G <= 4 ? 4 : 8}`);
    ctx.launch(split, [Math.ceil(plan.nUnits / DECODE.kWarps), Hkv, 1], [32 * DECODE.kWarps, 1, 1], 0, [
      ptr(alignedPtr(op, 'q', qt, 4)), ...partArgsOf('keys', keys), ...partArgsOf('values', values),
      i32(n), i32(Hq), i32(Hkv), f32(1 / Math.sqrt(D)), i32(plan.unitKeys), i32(plan.nUnits), ptr(part), ptr(ml),
    ]);
    const combine = ctx.kernel('attention_decode', `attention_decode_combine_d${D}`);
    ctx.launch(combine, [Hq, 1, 1], [COMBINE.kCombineThreads, 1, 1], 0, [
      ptr(part), ptr(ml), ptr(alignedPtr(op, 'out', ot, 8)), i32(1), i32(Hq), i32(Hkv), i32(n - 1), i32(n), i32(plan.unitKeys), i32(plan.nUnits), ptr(0n),
    ]);
  } finally {
    scratch.free(); // one stream: the next user of this block runs after these kernels
  }
}
