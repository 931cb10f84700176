import { CommvqError } from '../../../errors.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { emptyTensor, type CudaTensor } from '../cuda-tensor.js';
import { kernelConstants } from '../kernel-constants.js';
import { f32, i32, ptr, type CudaContextLike, type DeviceInfo } from '../kernels.js';
import { packedCodeBytes } from '../../../tensor/code-packing.js';
import { attentionStages } from '../../../commvq/attention-theta.js';
import { alignedPtr, expectElements, expectShape, tensorArg } from './tensor-args.js';

/**
 * Decode attention on CommVQ codes, on the GPU (spec §6.8): the launchers of `kernels/commvq_*.cu` and
 * `codeAttentionStep`, which computes one decode step's attention output of one layer for all query heads of a batch
 * from device tensors in the packed layouts of code-packing.ts. The CPU twin is code-attention.ts (`codeLogits`,
 * `codeValues`) composed as `CommvqCache.attendOne` does it; test/gpu/commvq-attention.test.ts checks one against the
 * other.
 *
 * Per sequence b (lengths live on the device, so sequences of a batch may differ and a captured graph stays valid):
 *   - N_b compressed tokens, token t at absolute position firstPosition + t: 12-bit key codes [R][H_kv] packed per
 *     token, the key norm n_t (bf16), N_c value bits (LSB first) and ρ′_t (bf16);
 *   - E_b exact tokens (sinks and the recent window): rotated keys and values, bf16.
 * One softmax spans both sets. The steps (each a kernel, shapes in its header):
 *   0. commvq_attn_rotation  e^{iφ} per compressed token and pair (skipped when the caller passes `rotation`, which
 *                            depends on positions only and so can be filled once for every layer and step)
 *   1. commvq_key_logits     logits of compressed tokens from codes and θ, plus per-chunk (max, Σexp)
 *   2. commvq_exact_logits   logits of exact tokens
 *   3. commvq_softmax_stats  the window's (max, Σexp), then (M, 1/Z) per (b, h)
 *   4. commvq_value_bits     S = Σ_t a_t ρ′_t b_t per head, split over tokens into f32 partials, then summed
 *   5. commvq_value_out      out = (S·E_h) ⊙ (ls_h + 1e-6) + Σ_exact a_t v_t, in runs of rows, then summed
 */

/** The shape of one decode step. Every size is a host number; per-sequence lengths are device int32 arrays. */
export interface CodeAttentionShape {
  /** B */
  readonly batch: number;
  /** H_q */
  readonly queryHeads: number;
  /** H_kv (= the key codebook's groups) */
  readonly kvHeads: number;
  /** D_h: 64 or 128 */
  readonly headDim: number;
  /** R, residual stages of the key codebook */
  readonly residuals: number;
  /** N_c, value bits per token (a multiple of 128) */
  readonly codeBits: number;
  /** tokens per sequence in the compressed arrays (their stride); a multiple of 64 */
  readonly capacity: number;
  /** tokens per sequence in the exact arrays (their stride) */
  readonly window: number;
  /** absolute position of compressed token 0 (the number of exact sink tokens; 0 by default in the cache) */
  readonly firstPosition: number;
  /** an upper bound of every N_b (sizes grids and workspace); ≤ capacity */
  readonly maxCompressed: number;
}

/**
 * The tensors of one decode step. The cache's arrays hold S ≥ sequence + B sequences (`CodeAttentionOptions.sequence`
 * picks the step's B): views of one allocation are fine.
 */
export interface CodeAttentionBuffers {
  /** bf16 [B, H_q·D_h], RoPE-rotated */
  readonly q: Tensor;
  /** f16 [S, H_kv, 64, D_h/2, 2], S = attentionStages(R): the layer's θ in the key kernel's layout (`attentionTheta`) */
  readonly theta: Tensor;
  /** f32 [D_h/2] */
  readonly invFreq: Tensor;
  /**
   * Optional: f32 of ≥ maxCompressed·D_h elements, float2 [≥ maxCompressed, D_h/2]: (cos φ, sin φ) of compressed token
   * t (position firstPosition + t) and pair j, as `launchRotationTable` fills it. It depends on positions only, so a
   * cache can fill it once for its capacity and pass it to every layer and step (8 bytes × D_h/2 per token: 64 MiB
   * for 131072 tokens at D_h 128). Without it every call fills a table of maxCompressed tokens in the workspace
   * (≈ 30 µs at 128K tokens on an H100).
   */
  readonly rotation?: Tensor;
  /** u8 [S, capacity, packedCodeBytes(R·H_kv)] */
  readonly keyCodes: Tensor;
  /** bf16 [S, capacity]: n_t */
  readonly keyNorms: Tensor;
  /** u8 [S, capacity, N_c/8] */
  readonly valueBits: Tensor;
  /** bf16 [S, capacity]: ρ′_t = (ρ_t + ε)/(‖b_t E‖ + ε) */
  readonly valueRho: Tensor;
  /** bf16 [N_c, H_kv·D_h]: the value codebook E */
  readonly codebook: Tensor;
  /** f32 [H_kv·D_h]: the value scale ls */
  readonly scale: Tensor;
  /** bf16 of S·window rows of H_kv·D_h (e.g. [S·window, H_kv·D_h]): rotated exact keys */
  readonly exactKeys: Tensor;
  /** bf16, as exactKeys: exact values */
  readonly exactValues: Tensor;
  /** i32 [S]: N_b */
  readonly compressed: Tensor;
  /** i32 [S]: E_b */
  readonly exact: Tensor;
  /** [B, H_q·D_h], bf16 (the model's activations) or f32 */
  readonly out: Tensor;
}

export interface CodeAttentionOptions {
  /** the step's batch is sequences [sequence, sequence + B) of the cache's arrays (default 0) */
  readonly sequence?: number;
  /** scratch to use instead of allocating it per call (needed inside a CUDA graph capture) */
  readonly workspace?: CodeAttentionWorkspace;
}

const KEY = kernelConstants('commvq_key_logits', ['kThreads', 'kChunk', 'kPhasePairs', 'kPhaseBytes']);
const EXACT = kernelConstants('commvq_exact_logits', ['kThreads', 'kTokens']);
const STATS = kernelConstants('commvq_softmax_stats', ['kThreads']);
const ROTATION = kernelConstants('commvq_attn_rotation', ['kThreads']);
const BITS = kernelConstants('commvq_value_bits', ['kThreads', 'kStep', 'kHeads', 'kCtaBytes', 'kSmemBytes', 'kReduceCols']);
const OUT = kernelConstants('commvq_value_out', ['kThreads', 'kCodeRuns', 'kExactRuns', 'kChannels']);
const VALUE_SPLITS = 64; // token runs per sequence: fixed, so that a sequence's sums do not depend on the batch
/** f32 represents every integer position below this exactly: φ = f32(p·invFreq) as the CPU computes it. */
const MAX_POSITION = 2 ** 24;

type Region = 'logits' | 'stats' | 'exactLogits' | 'ms' | 'partial' | 'sums' | 'outPartial' | 'rotation';

/** Grid, block and workspace choices of one shape on one device. */
export interface CodeAttentionPlan {
  /** query heads per key CTA (template width 1, 2, 4 or 8) and head blocks per kv head */
  readonly keyHeads: 1 | 2 | 4 | 8;
  readonly headBlocks: number;
  /** compressed tokens per statistics entry (and per pass of a key CTA) */
  readonly chunk: number;
  /** key CTAs per (kv head block, sequence): each takes every `keySlices`-th chunk */
  readonly keySlices: number;
  /** phases of 32 pairs whose θ a key CTA holds at once (template 1 or 2): all of them when they fit, one pass */
  readonly keyPhases: 1 | 2;
  readonly keySharedBytes: number;
  readonly logitStride: number;
  /** per-chunk statistics, then the exact window's entry at `exactSlot` */
  readonly statStride: number;
  readonly exactSlot: number;
  /** padded head stride of the value sums */
  readonly valueHeads: number;
  readonly splits: number;
  /** byte offsets and sizes of the workspace's regions, and its size; `rotation` is empty when the caller has one */
  readonly offsets: Readonly<Record<Region, number>>;
  readonly sizes: Readonly<Record<Region, number>>;
  readonly workspaceBytes: number;
}

const roundUp = (x: number, m: number): number => Math.ceil(x / m) * m;

export interface CodeAttentionPlanOptions {
  /** the caller passes `CodeAttentionBuffers.rotation`: the workspace holds no rotation table (default false) */
  readonly rotationProvided?: boolean;
}

/** Checks a shape and chooses grids, shared memory and workspace layout for `info`'s device. */
export function planCodeAttention(info: DeviceInfo, shape: CodeAttentionShape, options: CodeAttentionPlanOptions = {}): CodeAttentionPlan {
  checkShape(shape);
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, residuals: R, codeBits: Nc } = shape;
  const G = Hq / Hkv;
  const keyHeads = G <= 1 ? 1 : G <= 2 ? 2 : G <= 4 ? 4 : 8;
  const chunk = KEY.kChunk;
  // θ of the resident phases (all stages, 32 pairs a phase, f16) and a zero row, the chunk's unpacked codes (one byte
  // per matrix and step, steps rounded up to 4), its logits; every phase resident when that fits (one pass)
  const S = attentionStages(R);
  const codeRow = 4 * roundUp(Math.ceil(S / 2), 4);
  const sharedBytes = (phases: number) => (64 * S + 1) * phases * KEY.kPhaseBytes + chunk * codeRow + keyHeads * chunk * 4;
  const allPhases = shape.headDim / 2 / KEY.kPhasePairs;
  const keyPhases: 1 | 2 = allPhases === 2 && sharedBytes(2) <= info.maxSharedPerBlockOptin ? 2 : 1;
  const keySharedBytes = sharedBytes(keyPhases);
  if (keySharedBytes > info.maxSharedPerBlockOptin) {
    throw new CommvqError(`commvq key logits at R = ${R} need ${keySharedBytes} bytes of shared memory; ${info.name} allows ${info.maxSharedPerBlockOptin}`);
  }
  const chunks = Math.max(1, Math.ceil(shape.maxCompressed / chunk));
  const headBlocks = Math.ceil(G / keyHeads);
  // one wave of key CTAs, one per SM (512 threads × the 128 registers each is compiled for fill an SM's 64K), each
  // walking several chunks, so θ is staged once per CTA and no partial wave trails
  const keySlices = Math.min(chunks, Math.max(1, Math.floor(info.smCount / (Hkv * headBlocks * B))));
  const logitStride = roundUp(Math.max(1, shape.maxCompressed), BITS.kStep);
  const statStride = chunks + 1;
  const valueHeads = roundUp(Hq, BITS.kHeads);
  const sizes: Record<Region, number> = {
    logits: B * Hq * logitStride * 4,
    stats: B * Hq * statStride * 8,
    exactLogits: B * Hq * shape.window * 4,
    ms: B * Hq * 8,
    partial: B * VALUE_SPLITS * Nc * valueHeads * 4,
    sums: B * Nc * valueHeads * 4,
    outPartial: B * (OUT.kCodeRuns + OUT.kExactRuns) * Hq * shape.headDim * 4,
    rotation: options.rotationProvided ? 0 : rotationTableBytes(shape.maxCompressed, shape.headDim),
  };
  let at = 0;
  const offsets = {} as Record<Region, number>;
  for (const key of Object.keys(sizes) as Region[]) {
    offsets[key] = at;
    at += roundUp(sizes[key], 256);
  }
  return {
    keyHeads,
    headBlocks,
    chunk,
    keyPhases,
    keySlices,
    keySharedBytes,
    logitStride,
    statStride,
    exactSlot: chunks,
    valueHeads,
    splits: VALUE_SPLITS,
    offsets,
    sizes,
    workspaceBytes: at,
  };
}

function checkShape(s: CodeAttentionShape): void {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new CommvqError(`code attention: ${name} must be an integer ≥ ${min}, got ${v}`);
  };
  int('batch', s.batch, 1);
  int('queryHeads', s.queryHeads, 1);
  int('kvHeads', s.kvHeads, 1);
  int('residuals', s.residuals, 1);
  int('codeBits', s.codeBits, 128);
  int('capacity', s.capacity, 0);
  int('window', s.window, 1);
  int('firstPosition', s.firstPosition, 0);
  int('maxCompressed', s.maxCompressed, 0);
  const step = BITS.kStep;
  if (s.headDim !== 64 && s.headDim !== 128) throw new CommvqError(`code attention: head_dim ${s.headDim} is not supported`, 'head_dim 64 and 128 are');
  if (s.queryHeads % s.kvHeads !== 0) throw new CommvqError(`code attention: ${s.queryHeads} query heads are not a multiple of ${s.kvHeads} kv heads`);
  if (s.codeBits % 128 !== 0) throw new CommvqError(`code attention: N_c = ${s.codeBits} is not a multiple of 128`);
  if (s.capacity % step !== 0) throw new CommvqError(`code attention: capacity ${s.capacity} is not a multiple of ${step} tokens`, `allocate the compressed arrays in blocks of ${step} tokens`);
  if (s.maxCompressed > s.capacity) throw new CommvqError(`code attention: maxCompressed ${s.maxCompressed} exceeds the capacity ${s.capacity}`);
  if (s.firstPosition + s.maxCompressed > MAX_POSITION) {
    throw new CommvqError(`code attention: positions up to ${s.firstPosition + s.maxCompressed} exceed 2^24, where f32 positions stop being exact`);
  }
  if (s.window * 4 > 48 * 1024) throw new CommvqError(`code attention: an exact window of ${s.window} tokens exceeds 12288`);
}

/**
 * Scratch memory of `codeAttentionStep` for one plan (logits, softmax statistics, value partials and sums): one
 * owner, `dispose()` frees it.
 *
 *   const ws = new CodeAttentionWorkspace(ctx, planCodeAttention(ctx.info, shape));
 *   codeAttentionStep(ctx, buffers, shape, { workspace: ws });
 *   ws.dispose();
 */
export class CodeAttentionWorkspace {
  private readonly memory: CudaTensor;

  constructor(
    ctx: CudaContextLike,
    readonly plan: CodeAttentionPlan,
  ) {
    this.memory = emptyTensor(ctx, [plan.workspaceBytes], 'u8');
  }

  /** A workspace region as f32 (float2 regions as pairs of f32): e.g. the logits [B, H_q, logitStride]. */
  region(name: Region): CudaTensor {
    return this.memory.view(this.plan.offsets[name], [this.plan.sizes[name] / 4], 'f32');
  }

  fits(plan: CodeAttentionPlan): boolean {
    const o = this.plan.offsets;
    const p = plan.offsets;
    return (Object.keys(p) as Region[]).every((k) => p[k] === o[k]) && plan.workspaceBytes <= this.plan.workspaceBytes
      && plan.logitStride === this.plan.logitStride && plan.statStride === this.plan.statStride && plan.valueHeads === this.plan.valueHeads;
  }

  dispose(): void {
    this.memory.dispose();
  }
}

/** The device addresses of one step's buffers (the step's first sequence applied), after every check. */
interface Addresses {
  q: bigint; theta: bigint; invFreq: bigint; rotation?: bigint; keyCodes: bigint; keyNorms: bigint; valueBits: bigint;
  valueRho: bigint; codebook: bigint; scale: bigint; exactKeys: bigint; exactValues: bigint; compressed: bigint;
  exact: bigint; out: bigint; outDType: 'bf16' | 'f32';
}

/** Checks every buffer against the shape and resolves its address at the step's first sequence. */
function addresses(ctx: CudaContextLike, b: CodeAttentionBuffers, s: CodeAttentionShape, sequence: number): Addresses {
  const op = 'code attention';
  if (!Number.isInteger(sequence) || sequence < 0) throw new CommvqError(`${op}: sequence must be an integer ≥ 0, got ${sequence}`);
  const S = sequence + s.batch;
  const F = s.kvHeads * s.headDim;
  const P = s.headDim / 2;
  const cap = s.capacity;
  const arg = (name: keyof CodeAttentionBuffers, dtype: 'bf16' | 'f16' | 'f32' | 'u8' | 'i32', elements: number, align = 1): CudaTensor => {
    const t = tensorArg(ctx, op, name, b[name]!, dtype);
    expectElements(op, name, t, elements);
    alignedPtr(op, name, t, align);
    return t;
  };
  /** A [≥S, capacity, row] (or [≥S, capacity]) array, at the step's first sequence. */
  const perSequence = (name: 'keyCodes' | 'keyNorms' | 'valueBits' | 'valueRho', dtype: 'u8' | 'bf16', row: number | undefined, align: number): bigint => {
    const t = tensorArg(ctx, op, name, b[name], dtype);
    expectShape(op, name, t, row === undefined ? [-1, cap] : [-1, cap, row]);
    if (t.shape[0]! < S) throw new CommvqError(`${op}: ${name} holds ${t.shape[0]} sequences, the step reads ${sequence} .. ${S - 1}`);
    const at = t.ptr + BigInt(sequence * cap * (row ?? 2));
    if (at === 0n) throw new CommvqError(`${op}: ${name} is a null pointer`);
    if (at % BigInt(align) !== 0n) throw new CommvqError(`${op}: ${name} is not ${align}-byte aligned`);
    return at;
  };
  const out = tensorArg(ctx, op, 'out', b.out, ['bf16', 'f32']);
  expectElements(op, 'out', out, s.batch * s.queryHeads * s.headDim);
  const exactRow = BigInt(sequence * s.window * F * 2);
  return {
    q: arg('q', 'bf16', s.batch * s.queryHeads * s.headDim).ptr,
    theta: arg('theta', 'f16', attentionStages(s.residuals) * s.kvHeads * 128 * P, 16).ptr,
    invFreq: arg('invFreq', 'f32', P).ptr,
    rotation: b.rotation && arg('rotation', 'f32', s.maxCompressed * 2 * P, 16).ptr,
    keyCodes: perSequence('keyCodes', 'u8', packedCodeBytes(s.residuals * s.kvHeads), 1),
    keyNorms: perSequence('keyNorms', 'bf16', undefined, 1),
    valueBits: perSequence('valueBits', 'u8', s.codeBits / 8, 16),
    valueRho: perSequence('valueRho', 'bf16', undefined, 16),
    codebook: alignedPtr(op, 'codebook', tensorArg(ctx, op, 'codebook', b.codebook, 'bf16', [s.codeBits, F]), 1),
    scale: arg('scale', 'f32', F).ptr,
    exactKeys: arg('exactKeys', 'bf16', S * s.window * F).ptr + exactRow,
    exactValues: arg('exactValues', 'bf16', S * s.window * F).ptr + exactRow,
    compressed: arg('compressed', 'i32', S).ptr + BigInt(sequence * 4),
    exact: arg('exact', 'i32', S).ptr + BigInt(sequence * 4),
    out: alignedPtr(op, 'out', out, 1),
    outDType: out.dtype as 'bf16' | 'f32',
  };
}

/** The workspace regions as addresses. */
function regions(ws: CodeAttentionWorkspace): Record<Region, bigint> {
  const r = {} as Record<Region, bigint>;
  for (const name of Object.keys(ws.plan.offsets) as Region[]) r[name] = ws.region(name).ptr;
  return r;
}

/**
 * One decode step of attention on a CommVQ cache, for every query head of a batch, enqueued on the context's stream.
 *
 *   // Llama-3.1-8B layer, one sequence of 131072 tokens: 130944 compressed and a window of 128 exact ones
 *   codeAttentionStep(ctx, buffers, { batch: 1, queryHeads: 32, kvHeads: 8, headDim: 128, residuals: 11,
 *     codeBits: 1024, capacity: 131072, window: 128, firstPosition: 0, maxCompressed: 130944 });
 */
export function codeAttentionStep(ctx: CudaContextLike, b: CodeAttentionBuffers, shape: CodeAttentionShape, options: CodeAttentionOptions = {}): void {
  const rotationProvided = b.rotation !== undefined;
  const plan = planCodeAttention(ctx.info, shape, { rotationProvided });
  const a = addresses(ctx, b, shape, options.sequence ?? 0);
  if (options.workspace && !options.workspace.fits(plan)) {
    throw new CommvqError('code attention: the workspace was planned for another shape', 'plan it with planCodeAttention(ctx.info, shape)');
  }
  const ws = options.workspace ?? new CodeAttentionWorkspace(ctx, plan);
  try {
    const w = regions(ws);
    const rotation = a.rotation ?? w.rotation;
    if (!rotationProvided) rotationTable(ctx, a.invFreq, rotation, shape.firstPosition, shape.maxCompressed, shape.headDim);
    keyLogits(ctx, plan, shape, a, rotation, w);
    exactLogits(ctx, shape, a, w);
    softmaxStats(ctx, plan, shape, a, w);
    valueBits(ctx, plan, shape, a, w);
    valueOut(ctx, plan, shape, a, w);
  } finally {
    if (!options.workspace) ws.dispose(); // the caching allocator hands it out again only to work queued after this
  }
}

/** Bytes of a rotation table of `tokens` tokens (float2 per token and pair). */
export function rotationTableBytes(tokens: number, headDim: number): number {
  return tokens * (headDim / 2) * 8;
}

/**
 * Step 0: fills rotation f32 [≥ count, D_h/2, 2] (float2 (cos φ, sin φ)), φ = f32((firstPosition + t)·invFreq_j),
 * D_h/2 = the elements of invFreq f32. A cache fills it once for its capacity and passes it as
 * `CodeAttentionBuffers.rotation` to every layer and step:
 *
 *   const rot = emptyTensor(ctx, [capacity, 64, 2], 'f32');
 *   launchRotationTable(ctx, { invFreq, rotation: rot }, firstPosition, capacity);
 */
export function launchRotationTable(ctx: CudaContextLike, p: { invFreq: Tensor; rotation: Tensor }, firstPosition: number, count: number): void {
  const op = 'rotation table';
  const invFreq = tensorArg(ctx, op, 'invFreq', p.invFreq, 'f32');
  const rotation = tensorArg(ctx, op, 'rotation', p.rotation, 'f32');
  expectElements(op, 'rotation', rotation, count * 2 * invFreq.numel);
  rotationTable(ctx, invFreq.ptr, alignedPtr(op, 'rotation', rotation, 8), firstPosition, count, 2 * invFreq.numel);
}

function rotationTable(ctx: CudaContextLike, invFreq: bigint, rotation: bigint, firstPosition: number, count: number, headDim: number): void {
  if (count === 0) return;
  if (firstPosition + count > MAX_POSITION) throw new CommvqError(`rotation table: positions up to ${firstPosition + count} exceed 2^24`);
  const P = headDim / 2;
  const threads = ROTATION.kThreads;
  ctx.launch(ctx.kernel('commvq_attn_rotation', 'commvq_attn_rotation'), [Math.ceil((count * P) / threads), 1, 1], [threads, 1, 1], 0, [
    ptr(invFreq), ptr(rotation), i32(P), i32(firstPosition), i32(count),
  ]);
}

/**
 * One step of `codeAttentionStep` alone, on a workspace planned for the shape (tests pin a kernel with them; the bench
 * times each): the buffers as codeAttentionStep takes them, the rotation from `b.rotation` or the workspace.
 *
 *   launchKeyLogits(ctx, ws, shape, { ...buffers, rotation });   // ws.region('logits') then holds the logits
 */
export function launchKeyLogits(ctx: CudaContextLike, ws: CodeAttentionWorkspace, s: CodeAttentionShape, b: CodeAttentionBuffers, options: { sequence?: number } = {}): void {
  const w = regions(ws);
  const a = addresses(ctx, b, s, options.sequence ?? 0);
  keyLogits(ctx, ws.plan, s, a, a.rotation ?? w.rotation, w);
}

/** Step 2 alone (see launchKeyLogits). */
export function launchExactLogits(ctx: CudaContextLike, ws: CodeAttentionWorkspace, s: CodeAttentionShape, b: CodeAttentionBuffers, options: { sequence?: number } = {}): void {
  exactLogits(ctx, s, addresses(ctx, b, s, options.sequence ?? 0), regions(ws));
}

/** Step 3 alone (see launchKeyLogits). */
export function launchSoftmaxStats(ctx: CudaContextLike, ws: CodeAttentionWorkspace, s: CodeAttentionShape, b: CodeAttentionBuffers, options: { sequence?: number } = {}): void {
  softmaxStats(ctx, ws.plan, s, addresses(ctx, b, s, options.sequence ?? 0), regions(ws));
}

/** Step 4 alone (see launchKeyLogits). */
export function launchValueBits(ctx: CudaContextLike, ws: CodeAttentionWorkspace, s: CodeAttentionShape, b: CodeAttentionBuffers, options: { sequence?: number } = {}): void {
  valueBits(ctx, ws.plan, s, addresses(ctx, b, s, options.sequence ?? 0), regions(ws));
}

/** Step 5 alone (see launchKeyLogits). */
export function launchValueOut(ctx: CudaContextLike, ws: CodeAttentionWorkspace, s: CodeAttentionShape, b: CodeAttentionBuffers, options: { sequence?: number } = {}): void {
  valueOut(ctx, ws.plan, s, addresses(ctx, b, s, options.sequence ?? 0), regions(ws));
}

/** Step 1: logits [B, H_q, logitStride] f32 and per-chunk statistics of the compressed tokens. */
function keyLogits(ctx: CudaContextLike, plan: CodeAttentionPlan, s: CodeAttentionShape, a: Addresses, rotation: bigint, w: Record<Region, bigint>): void {
  const kernel = ctx.kernel('commvq_key_logits', `commvq_key_logits_g${plan.keyHeads}_p${plan.keyPhases}`);
  // kv heads fastest: the CTAs of one chunk run together and share its rotation rows in L2
  const grid = [s.kvHeads * plan.headBlocks, plan.keySlices, s.batch] as const;
  if (s.maxCompressed === 0) return; // no compressed token anywhere: the statistics kernel reads no chunk
  ctx.launch(kernel, grid, [KEY.kThreads, 1, 1], plan.keySharedBytes, [
    ptr(a.q), ptr(a.theta), ptr(rotation), ptr(a.keyCodes), ptr(a.keyNorms), ptr(a.compressed), ptr(w.logits), ptr(w.stats),
    i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim), i32(s.residuals), i32(attentionStages(s.residuals)), i32(s.capacity),
    i32(plan.logitStride), i32(plan.statStride), f32(1 / Math.sqrt(s.headDim)),
  ]);
}

/** Step 2: logits [B, H_q, window] f32 of the exact tokens. */
function exactLogits(ctx: CudaContextLike, s: CodeAttentionShape, a: Addresses, w: Record<Region, bigint>): void {
  ctx.launch(ctx.kernel('commvq_exact_logits', 'commvq_exact_logits'), [s.queryHeads, Math.ceil(s.window / EXACT.kTokens), s.batch], [EXACT.kThreads, 1, 1], 0, [
    ptr(a.q), ptr(a.exactKeys), ptr(a.exact), ptr(w.exactLogits),
    i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim), i32(s.window), f32(1 / Math.sqrt(s.headDim)),
  ]);
}

/** Step 3: the window's statistics (entry `exactSlot`) and (M, 1/Z) [B, H_q] float2 of the joint softmax. */
function softmaxStats(ctx: CudaContextLike, plan: CodeAttentionPlan, s: CodeAttentionShape, a: Addresses, w: Record<Region, bigint>): void {
  ctx.launch(ctx.kernel('commvq_softmax_stats', 'commvq_softmax_stats'), [s.queryHeads, s.batch, 1], [STATS.kThreads, 1, 1], 0, [
    ptr(w.stats), ptr(w.exactLogits), ptr(a.compressed), ptr(a.exact), ptr(w.ms),
    i32(s.queryHeads), i32(plan.statStride), i32(plan.chunk), i32(plan.exactSlot), i32(s.window),
  ]);
}

/**
 * Step 4: weighted bit sums S [B, N_c, valueHeads] f32, through f32 partials [B, splits, N_c, valueHeads] (each already
 * scaled by 1/Z). The split kernel stages its tokens in kSmemBytes (≈ 62 KiB) of dynamic shared memory.
 */
function valueBits(ctx: CudaContextLike, plan: CodeAttentionPlan, s: CodeAttentionShape, a: Addresses, w: Record<Region, bigint>): void {
  const Hp = plan.valueHeads;
  const threads = BITS.kThreads;
  if (s.maxCompressed > 0) {
    ctx.launch(ctx.kernel('commvq_value_bits', 'commvq_value_bits_split'),
      [plan.splits, Math.ceil(s.codeBits / (8 * BITS.kCtaBytes)), s.batch * (Hp / BITS.kHeads)], [threads, 1, 1], BITS.kSmemBytes, [
        ptr(w.logits), ptr(w.ms), ptr(a.valueRho), ptr(a.valueBits), ptr(a.compressed), ptr(w.partial),
        i32(s.queryHeads), i32(Hp), i32(s.codeBits), i32(s.capacity), i32(plan.logitStride), i32(plan.splits),
      ]);
  }
  // the reduce also writes zeros for sequences without compressed tokens; kReduceCols float4 columns of S per CTA
  ctx.launch(ctx.kernel('commvq_value_bits', 'commvq_value_bits_reduce'), [Math.ceil((s.codeBits * Hp) / (4 * BITS.kReduceCols)), s.batch, 1], [threads, 1, 1], 0, [
    ptr(w.partial), ptr(a.compressed), ptr(w.sums), i32(Hp), i32(s.codeBits), i32(plan.splits),
  ]);
}

/** Step 5: out [B, H_q·D_h] = (S·E_h) ⊙ (ls_h + 1e-6) + exact tokens' weighted values, through f32 partials. */
function valueOut(ctx: CudaContextLike, plan: CodeAttentionPlan, s: CodeAttentionShape, a: Addresses, w: Record<Region, bigint>): void {
  const threads = OUT.kThreads;
  ctx.launch(ctx.kernel('commvq_value_out', 'commvq_value_out_partial'), [s.batch * s.kvHeads, s.headDim / OUT.kChannels, OUT.kCodeRuns + OUT.kExactRuns], [threads, 1, 1], 0, [
    ptr(w.sums), ptr(w.ms), ptr(a.codebook), ptr(w.exactLogits), ptr(a.exactValues), ptr(a.exact), ptr(w.outPartial),
    i32(s.queryHeads), i32(s.kvHeads), i32(plan.valueHeads), i32(s.headDim), i32(s.codeBits), i32(s.window),
  ]);
  ctx.launch(ctx.kernel('commvq_value_out', `commvq_value_out_${a.outDType}`), [Math.ceil((s.queryHeads * s.headDim) / threads), s.batch, 1], [threads, 1, 1], 0, [
    ptr(w.outPartial), ptr(a.scale), ptr(a.out), i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim),
  ]);
}
