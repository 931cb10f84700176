import { CommvqError } from '../errors.js';
import { HALF_SIZE } from '../keys/codebook.js';
import { f32, i32, ptr, type CudaContextLike, type DeviceBlock, type DeviceInfo } from '../backend/cuda/kernels.js';
import { packedCodeBytes } from './code-packing.js';

/**
 * Decode attention on CommVQ codes, on the GPU (spec §6.8): the launchers of `kernels/commvq_*.cu` and
 * `codeAttentionStep`, which computes one decode step's attention output of one layer for all query heads of a batch
 * from device buffers in the packed layouts of code-packing.ts. The CPU twin is code-attention.ts (`codeLogits`,
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

/** Device pointers of one decode step (layouts: see the module comment and each kernel's header). */
export interface CodeAttentionBuffers {
  /** bf16 [B, H_q·D_h], RoPE-rotated */
  readonly q: bigint;
  /** f32 [R, H_kv, 2·64, D_h/2]: the layer's θ (LayerKeyCodebook.theta) */
  readonly theta: bigint;
  /** f32 [D_h/2] */
  readonly invFreq: bigint;
  /**
   * Optional: float2 f32 [≥ maxCompressed, D_h/2], (cos φ, sin φ) of compressed token t (position firstPosition + t)
   * and pair j, as `launchRotationTable` fills it. It depends on positions only, so a cache can fill it once for its
   * capacity and pass it to every layer and step (8 bytes × D_h/2 per token: 64 MiB for 131072 tokens at D_h 128).
   * Without it every call fills a table of maxCompressed tokens in the workspace (≈ 30 µs at 128K tokens on an H100).
   */
  readonly rotation?: bigint;
  /** u8 [B, capacity, packedCodeBytes(R·H_kv)] */
  readonly keyCodes: bigint;
  /** bf16 [B, capacity]: n_t */
  readonly keyNorms: bigint;
  /** u8 [B, capacity, N_c/8] */
  readonly valueBits: bigint;
  /** bf16 [B, capacity]: ρ′_t = (ρ_t + ε)/(‖b_t E‖ + ε) */
  readonly valueRho: bigint;
  /** bf16 [N_c, H_kv·D_h]: the value codebook E */
  readonly codebook: bigint;
  /** f32 [H_kv·D_h]: the value scale ls */
  readonly scale: bigint;
  /** bf16 [B, window, H_kv·D_h]: rotated exact keys */
  readonly exactKeys: bigint;
  /** bf16 [B, window, H_kv·D_h]: exact values */
  readonly exactValues: bigint;
  /** int32 [B]: N_b */
  readonly compressed: bigint;
  /** int32 [B]: E_b */
  readonly exact: bigint;
  /** [B, H_q·D_h], bf16 or f32 (`outDType`) */
  readonly out: bigint;
}

export interface CodeAttentionOptions {
  /** dtype of `out` (default bf16, the model's activations) */
  readonly outDType?: 'bf16' | 'f32';
  /** scratch to use instead of allocating it per call (needed inside a CUDA graph capture) */
  readonly workspace?: CodeAttentionWorkspace;
}

const KEY_THREADS = 512; // kernels/commvq_key_logits.cu kThreads
const KEY_STAGE_BYTES = 2 * HALF_SIZE * 32 * 4; // θ of one stage × 32 pairs, f32
const KEY_MAX_STAGES = 16; // the kernel holds a token's codes of ≤ 16 stages in two registers per lane
const EXACT_THREADS = 128;
const EXACT_CTA_TOKENS = 16; // kernels/commvq_exact_logits.cu: 8 lanes per token
const STATS_THREADS = 128;
const ROTATION_THREADS = 256;
const VALUE_SPLITS = 64; // token runs per sequence: fixed, so that a sequence's sums do not depend on the batch
const VALUE_CTA_BITS = 512; // kernels/commvq_value_bits.cu: 8 warps × 64 bits
const VALUE_CTA_HEADS = 32;
const VALUE_THREADS = 256;
const OUT_THREADS = 256;
const OUT_RUNS = 12; // kernels/commvq_value_out.cu: 8 runs of codebook rows + 4 runs of exact tokens
const OUT_CHANNELS = 64; // channels per partial CTA
const STEP_TOKENS = 64;
/** f32 represents every integer position below this exactly: φ = f32(p·invFreq) as the CPU computes it. */
const MAX_POSITION = 2 ** 24;

/** Grid, block and workspace choices of one shape on one device. */
export interface CodeAttentionPlan {
  /** query heads per key CTA (template width 1, 2, 4 or 8) and head blocks per kv head */
  readonly keyHeads: 1 | 2 | 4 | 8;
  readonly headBlocks: number;
  /** compressed tokens per key CTA */
  readonly chunk: number;
  /** θ stages held in shared memory per phase */
  readonly stagesPerPhase: number;
  readonly keySharedBytes: number;
  readonly logitStride: number;
  /** per-chunk statistics, then the exact window's entry at `exactSlot` */
  readonly statStride: number;
  readonly exactSlot: number;
  /** padded head stride of the value sums */
  readonly valueHeads: number;
  readonly splits: number;
  /** byte offsets into the workspace and its size; `rotation` is empty when the caller passes its own table */
  readonly offsets: {
    logits: number; stats: number; exactLogits: number; ms: number; partial: number; sums: number; outPartial: number; rotation: number;
  };
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
  const chunk = keyHeads <= 4 ? 1024 : 512;
  const logBytes = keyHeads * chunk * 4;
  const fit = Math.min(KEY_MAX_STAGES, Math.floor((info.maxSharedPerBlockOptin - logBytes) / KEY_STAGE_BYTES));
  if (fit < 1) {
    throw new CommvqError(`commvq key logits need ${KEY_STAGE_BYTES + logBytes} bytes of shared memory; ${info.name} allows ${info.maxSharedPerBlockOptin}`);
  }
  const phases = Math.ceil(R / fit);
  const stagesPerPhase = Math.ceil(R / phases);
  const chunks = Math.max(1, Math.ceil(shape.maxCompressed / chunk));
  const logitStride = roundUp(Math.max(1, shape.maxCompressed), STEP_TOKENS);
  const statStride = chunks + 1;
  const valueHeads = roundUp(Hq, VALUE_CTA_HEADS);
  const sizes = {
    logits: B * Hq * logitStride * 4,
    stats: B * Hq * statStride * 8,
    exactLogits: B * Hq * shape.window * 4,
    ms: B * Hq * 8,
    partial: B * VALUE_SPLITS * Nc * valueHeads * 4,
    sums: B * Nc * valueHeads * 4,
    outPartial: B * OUT_RUNS * Hq * shape.headDim * 4,
    rotation: options.rotationProvided ? 0 : rotationTableBytes(shape.maxCompressed, shape.headDim),
  };
  let at = 0;
  const offsets = {} as Record<keyof typeof sizes, number>;
  for (const key of Object.keys(sizes) as (keyof typeof sizes)[]) {
    offsets[key] = at;
    at += roundUp(sizes[key], 256);
  }
  return {
    keyHeads,
    headBlocks: Math.ceil(G / keyHeads),
    chunk,
    stagesPerPhase,
    keySharedBytes: stagesPerPhase * KEY_STAGE_BYTES + logBytes,
    logitStride,
    statStride,
    exactSlot: chunks,
    valueHeads,
    splits: VALUE_SPLITS,
    offsets,
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
  if (s.headDim !== 64 && s.headDim !== 128) throw new CommvqError(`code attention: head_dim ${s.headDim} is not supported`, 'head_dim 64 and 128 are');
  if (s.queryHeads % s.kvHeads !== 0) throw new CommvqError(`code attention: ${s.queryHeads} query heads are not a multiple of ${s.kvHeads} kv heads`);
  if (s.codeBits % 128 !== 0) throw new CommvqError(`code attention: N_c = ${s.codeBits} is not a multiple of 128`);
  if (s.capacity % STEP_TOKENS !== 0) throw new CommvqError(`code attention: capacity ${s.capacity} is not a multiple of ${STEP_TOKENS} tokens`, 'allocate the compressed arrays in blocks of 64 tokens');
  if (s.maxCompressed > s.capacity) throw new CommvqError(`code attention: maxCompressed ${s.maxCompressed} exceeds the capacity ${s.capacity}`);
  if (s.firstPosition + s.maxCompressed > MAX_POSITION) {
    throw new CommvqError(`code attention: positions up to ${s.firstPosition + s.maxCompressed} exceed 2^24, where f32 positions stop being exact`);
  }
  if (s.window * 4 > 48 * 1024) throw new CommvqError(`code attention: an exact window of ${s.window} tokens exceeds 12288`);
}

function checkPointers(buffers: Readonly<Record<string, bigint>>, aligned: readonly string[]): void {
  for (const [name, p] of Object.entries(buffers)) {
    if (p === 0n) throw new CommvqError(`code attention: ${name} is a null pointer`);
  }
  for (const name of aligned) {
    if (buffers[name]! % 16n !== 0n) throw new CommvqError(`code attention: ${name} is not 16-byte aligned`);
  }
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
  private block: DeviceBlock | null;

  constructor(
    ctx: CudaContextLike,
    readonly plan: CodeAttentionPlan,
  ) {
    this.block = ctx.alloc(plan.workspaceBytes);
  }

  /** Device address of a workspace region. */
  at(region: keyof CodeAttentionPlan['offsets']): bigint {
    if (!this.block) throw new CommvqError('code attention workspace used after dispose()');
    return this.block.ptr + BigInt(this.plan.offsets[region]);
  }

  fits(plan: CodeAttentionPlan): boolean {
    const o = this.plan.offsets;
    const p = plan.offsets;
    return (Object.keys(p) as (keyof typeof p)[]).every((k) => p[k] === o[k]) && plan.workspaceBytes <= this.plan.workspaceBytes
      && plan.logitStride === this.plan.logitStride && plan.statStride === this.plan.statStride && plan.valueHeads === this.plan.valueHeads;
  }

  dispose(): void {
    this.block?.free();
    this.block = null;
  }
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
  checkPointers({ ...b }, ['theta', 'valueBits', 'valueRho', ...(rotationProvided ? ['rotation'] : [])]);
  const ws = options.workspace ?? new CodeAttentionWorkspace(ctx, plan);
  if (options.workspace && !options.workspace.fits(plan)) {
    throw new CommvqError('code attention: the workspace was planned for another shape', 'plan it with planCodeAttention(ctx.info, shape)');
  }
  try {
    const rotation = b.rotation ?? ws.at('rotation');
    if (!rotationProvided) launchRotationTable(ctx, { invFreq: b.invFreq, rotation }, shape.firstPosition, shape.maxCompressed, shape.headDim);
    launchKeyLogits(ctx, plan, shape, { ...b, rotation, logits: ws.at('logits'), stats: ws.at('stats') });
    launchExactLogits(ctx, plan, shape, { q: b.q, exactKeys: b.exactKeys, exact: b.exact, logits: ws.at('exactLogits') });
    launchSoftmaxStats(ctx, plan, shape, {
      stats: ws.at('stats'), exactLogits: ws.at('exactLogits'), compressed: b.compressed, exact: b.exact, ms: ws.at('ms'),
    });
    launchValueBits(ctx, plan, shape, {
      logits: ws.at('logits'), ms: ws.at('ms'), valueRho: b.valueRho, valueBits: b.valueBits, compressed: b.compressed,
      partial: ws.at('partial'), sums: ws.at('sums'),
    });
    launchValueOut(ctx, plan, shape, {
      sums: ws.at('sums'), ms: ws.at('ms'), codebook: b.codebook, scale: b.scale, exactLogits: ws.at('exactLogits'),
      exactValues: b.exactValues, exact: b.exact, outPartial: ws.at('outPartial'), out: b.out,
    }, options.outDType ?? 'bf16');
  } finally {
    if (!options.workspace) ws.dispose(); // the caching allocator hands it out again only to work queued after this
  }
}

/** Bytes of a rotation table of `tokens` tokens (float2 per token and pair). */
export function rotationTableBytes(tokens: number, headDim: number): number {
  return tokens * (headDim / 2) * 8;
}

/**
 * Step 0: fills rotation [count, D_h/2] float2 with (cos φ, sin φ), φ = f32((firstPosition + t)·invFreq_j). A cache
 * fills it once for its capacity and passes it as `CodeAttentionBuffers.rotation` to every layer and step:
 *
 *   const rot = ctx.alloc(rotationTableBytes(capacity, 128));
 *   launchRotationTable(ctx, { invFreq, rotation: rot.ptr }, firstPosition, capacity, 128);
 */
export function launchRotationTable(
  ctx: CudaContextLike,
  p: { invFreq: bigint; rotation: bigint },
  firstPosition: number,
  count: number,
  headDim: number,
): void {
  if (count === 0) return;
  if (firstPosition + count > MAX_POSITION) throw new CommvqError(`rotation table: positions up to ${firstPosition + count} exceed 2^24`);
  const P = headDim / 2;
  ctx.launch(ctx.kernel('commvq_attn_rotation', 'commvq_attn_rotation'), [Math.ceil((count * P) / ROTATION_THREADS), 1, 1], [ROTATION_THREADS, 1, 1], 0, [
    ptr(p.invFreq), ptr(p.rotation), i32(P), i32(firstPosition), i32(count),
  ]);
}

/** Step 1: logits [B, H_q, logitStride] f32 and per-chunk statistics of the compressed tokens. */
export function launchKeyLogits(
  ctx: CudaContextLike,
  plan: CodeAttentionPlan,
  s: CodeAttentionShape,
  p: Pick<CodeAttentionBuffers, 'q' | 'theta' | 'keyCodes' | 'keyNorms' | 'compressed'> & { rotation: bigint; logits: bigint; stats: bigint },
): void {
  const kernel = ctx.kernel('commvq_key_logits', `commvq_key_logits_g${plan.keyHeads}`);
  // kv heads fastest: the CTAs of one chunk run together and share its rotation rows in L2
  const grid = [s.kvHeads * plan.headBlocks, Math.max(1, Math.ceil(s.maxCompressed / plan.chunk)), s.batch] as const;
  if (s.maxCompressed === 0) return; // no compressed token anywhere: the statistics kernel reads no chunk
  ctx.launch(kernel, grid, [KEY_THREADS, 1, 1], plan.keySharedBytes, [
    ptr(p.q), ptr(p.theta), ptr(p.rotation), ptr(p.keyCodes), ptr(p.keyNorms), ptr(p.compressed), ptr(p.logits), ptr(p.stats),
    i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim), i32(s.residuals), i32(plan.stagesPerPhase), i32(s.capacity),
    i32(plan.chunk), i32(plan.logitStride), i32(plan.statStride), f32(1 / Math.sqrt(s.headDim)),
  ]);
}

/** Step 2: logits [B, H_q, window] f32 of the exact tokens. */
export function launchExactLogits(
  ctx: CudaContextLike,
  _plan: CodeAttentionPlan,
  s: CodeAttentionShape,
  p: Pick<CodeAttentionBuffers, 'q' | 'exactKeys' | 'exact'> & { logits: bigint },
): void {
  ctx.launch(ctx.kernel('commvq_exact_logits', 'commvq_exact_logits'), [s.queryHeads, Math.ceil(s.window / EXACT_CTA_TOKENS), s.batch], [EXACT_THREADS, 1, 1], 0, [
    ptr(p.q), ptr(p.exactKeys), ptr(p.exact), ptr(p.logits),
    i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim), i32(s.window), f32(1 / Math.sqrt(s.headDim)),
  ]);
}

/** Step 3: the window's statistics (entry `exactSlot`) and (M, 1/Z) [B, H_q] float2 of the joint softmax. */
export function launchSoftmaxStats(
  ctx: CudaContextLike,
  plan: CodeAttentionPlan,
  s: CodeAttentionShape,
  p: { stats: bigint; exactLogits: bigint; compressed: bigint; exact: bigint; ms: bigint },
): void {
  ctx.launch(ctx.kernel('commvq_softmax_stats', 'commvq_softmax_stats'), [s.queryHeads, s.batch, 1], [STATS_THREADS, 1, 1], 0, [
    ptr(p.stats), ptr(p.exactLogits), ptr(p.compressed), ptr(p.exact), ptr(p.ms),
    i32(s.queryHeads), i32(plan.statStride), i32(plan.chunk), i32(plan.exactSlot), i32(s.window),
  ]);
}

/** Step 4: weighted bit sums S [B, N_c, valueHeads] f32, through f32 partials [B, splits, N_c, valueHeads]. */
export function launchValueBits(
  ctx: CudaContextLike,
  plan: CodeAttentionPlan,
  s: CodeAttentionShape,
  p: Pick<CodeAttentionBuffers, 'valueRho' | 'valueBits' | 'compressed'> & { logits: bigint; ms: bigint; partial: bigint; sums: bigint },
): void {
  const Hp = plan.valueHeads;
  if (s.maxCompressed > 0) {
    ctx.launch(ctx.kernel('commvq_value_bits', 'commvq_value_bits_split'),
      [plan.splits, Math.ceil(s.codeBits / VALUE_CTA_BITS), s.batch * (Hp / VALUE_CTA_HEADS)], [VALUE_THREADS, 1, 1], 0, [
        ptr(p.logits), ptr(p.ms), ptr(p.valueRho), ptr(p.valueBits), ptr(p.compressed), ptr(p.partial),
        i32(s.queryHeads), i32(Hp), i32(s.codeBits), i32(s.capacity), i32(plan.logitStride), i32(plan.splits),
      ]);
  }
  // the reduce also writes zeros for sequences without compressed tokens
  ctx.launch(ctx.kernel('commvq_value_bits', 'commvq_value_bits_reduce'), [Math.ceil((s.codeBits * Hp) / (4 * VALUE_THREADS)), s.batch, 1], [VALUE_THREADS, 1, 1], 0, [
    ptr(p.partial), ptr(p.compressed), ptr(p.sums), i32(Hp), i32(s.codeBits), i32(plan.splits),
  ]);
}

/** Step 5: out [B, H_q·D_h] = (S·E_h) ⊙ (ls_h + 1e-6) + exact tokens' weighted values, through f32 partials. */
export function launchValueOut(
  ctx: CudaContextLike,
  plan: CodeAttentionPlan,
  s: CodeAttentionShape,
  p: Pick<CodeAttentionBuffers, 'codebook' | 'scale' | 'exactValues' | 'exact' | 'out'> & { sums: bigint; ms: bigint; exactLogits: bigint; outPartial: bigint },
  outDType: 'bf16' | 'f32',
): void {
  ctx.launch(ctx.kernel('commvq_value_out', 'commvq_value_out_partial'), [s.batch * s.kvHeads, s.headDim / OUT_CHANNELS, OUT_RUNS], [OUT_THREADS, 1, 1], 0, [
    ptr(p.sums), ptr(p.ms), ptr(p.codebook), ptr(p.exactLogits), ptr(p.exactValues), ptr(p.exact), ptr(p.outPartial),
    i32(s.queryHeads), i32(s.kvHeads), i32(plan.valueHeads), i32(s.headDim), i32(s.codeBits), i32(s.window),
  ]);
  ctx.launch(ctx.kernel('commvq_value_out', `commvq_value_out_${outDType}`), [Math.ceil((s.queryHeads * s.headDim) / OUT_THREADS), s.batch, 1], [OUT_THREADS, 1, 1], 0, [
    ptr(p.outPartial), ptr(p.scale), ptr(p.out), i32(s.queryHeads), i32(s.kvHeads), i32(s.headDim),
  ]);
}

/** Bytes of one sequence's compressed token in each packed array: key codes, norm, value bits, ρ′. */
export function compressedTokenBytes(residuals: number, kvHeads: number, codeBits: number): { codes: number; norm: number; bits: number; rho: number } {
  return { codes: packedCodeBytes(residuals * kvHeads), norm: 2, bits: codeBits / 8, rho: 2 };
}
