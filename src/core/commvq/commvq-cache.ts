import type { Backend, RopeTable } from '../backend/backend.js';
import { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { cacheRunsOn } from '../cache-device.js';
import { CommvqError } from '../errors.js';
import type { LayerKeyCodebook } from '../keys/codebook.js';
import { commvqAblationBytesPerToken } from '../memory/cache-accounting.js';
import { checkStepGroups, type CacheShape, type KVCache } from '../model/kv-cache.js';
import type { LayerKV } from '../model/llama.js';
import type { StepGroup, StepInputs } from '../model/step-inputs.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ValueCompressorParams, ValueCompressorShape } from '../values/value-compressor.js';
import { CommvqRule, type PrefillMode, type ValueEncoding } from './commvq-rule.js';
import { DEFAULT_WINDOW } from './geometry.js';
import type { CommvqStore, EncodePart, PackedTokens, TokenCounts } from './commvq-store.js';
import { DeviceCommvqStore } from './device-store.js';
import { HostCommvqStore } from './host-store.js';

export type { PrefillMode, ValueEncoding } from './commvq-rule.js';

/**
 * Which half of a compressed token is in codes: both (CommVQ), or only the keys or only the values with the other
 * kept exact (the ablations that tell which half CommVQ's accuracy loss comes from).
 */
export type CompressTarget = 'keys' | 'values' | 'both';

export interface CommvqCacheOptions {
  /** per layer: the key codebook (θ) and the value compressor with its frozen scale, on the host (f32) */
  keys: ReadonlyMap<number, LayerKeyCodebook>;
  values: ReadonlyMap<number, { params: ValueCompressorParams; scale: Tensor }>;
  valueShape: ValueCompressorShape;
  rope: RopeTable;
  /** exact window W (default DEFAULT_WINDOW, the reference's 128): tokens are compressed in aligned blocks of W */
  window?: number;
  /** the first `sinks` tokens stay exact (default 0: the reference keeps none) */
  sinks?: number;
  prefill?: PrefillMode;
  /** value codes: deterministic argmax (default), or the reference's Gumbel sampling with a seed (§10.1 item 2) */
  valueEncoding?: ValueEncoding;
  capacity: number;
  /** sequences held (default 1) */
  batch?: number;
  /** time the encoding phases on the GPU (phaseTimes; default false) */
  timePhases?: boolean;
  /** the halves in codes (default both); keys or values alone only on the host store so far */
  compress?: CompressTarget;
}

/** The faithful prefill's exact keys (after RoPE) and values [capacity, D] of one layer's prompt so far. */
interface ExactPrompt {
  layer: number;
  sequence: number;
  length: number;
  k: Tensor;
  v: Tensor;
}

/** What a store is built from: the options with their defaults, the rule and the geometry. */
export interface StoreSettings {
  readonly shape: CacheShape;
  readonly options: CommvqCacheOptions;
  readonly rule: CommvqRule;
  readonly batch: number;
  readonly capacity: number;
  /** R: residual stages of the key codebook (every layer the same) */
  readonly residuals: number;
}

/**
 * The CommVQ cache (spec §6, §7): keys as 12-bit residual codes of the RoPE-commutative codebook plus a bf16 norm,
 * values as N_c bits plus a bf16 scale, the sinks and the most recent tokens exact. It owns the rules
 * (commvq-rule.ts) and the token counts; a store holds the tokens and computes: in device memory on a GPU
 * (device-store.ts), on the host elsewhere (host-store.ts, the f64 reference the kernels are tested against).
 *
 * - Decoding (one token per sequence): full windows are flushed into codes, the token is kept exact, and it attends
 *   on codes (§6.8) and the exact tokens, one softmax.
 * - A prompt: `faithful` attends exactly over the whole prompt (one forward, empty cache), then compresses its
 *   whole blocks; `strict` follows the decoding rule for every token (per W-block of queries) and may come in
 *   chunks of any size.
 *
 *   const cache = new CommvqCache(backend, model.cacheShape, { keys, values, valueShape, rope: model.rope, capacity });
 */
export class CommvqCache implements KVCache {
  readonly capacity: number;
  readonly batch: number;
  /** flushes and encoding run host logic between launches: not recordable as a graph */
  readonly replayable = false;
  readonly rule: CommvqRule;
  readonly prefillMode: PrefillMode;
  private readonly residuals: number; // R, the same in every layer
  private readonly encoding: ValueEncoding;
  private readonly store: CommvqStore;
  private readonly counts: TokenCounts[][]; // [layer][sequence]
  private readonly pending = new Map<number, LayerKV>();
  private exactPrompt: ExactPrompt | undefined; // faithful prefill: the prompt's exact K/V of one layer

  constructor(
    private readonly backend: Backend,
    readonly shape: CacheShape,
    private readonly o: CommvqCacheOptions,
  ) {
    const settings = storeSettings(shape, o);
    ({ capacity: this.capacity, batch: this.batch, rule: this.rule, residuals: this.residuals } = settings);
    this.prefillMode = o.prefill ?? 'faithful';
    this.encoding = o.valueEncoding ?? 'argmax';
    this.counts = Array.from({ length: shape.numLayers }, () => Array.from({ length: this.batch }, () => ({ length: 0, compressed: 0 })));
    refuseAblationOnDevice(o.compress ?? 'both', backend.device);
    this.store = backend instanceof CudaBackend ? new DeviceCommvqStore(backend, settings) : new HostCommvqStore(backend, settings);
  }

  get length(): number {
    return this.lengthOf(0);
  }

  lengthOf(sequence: number): number {
    return Math.min(...this.counts.map((c) => c[sequence]!.length));
  }

  append(layer: number, kv: LayerKV, step: StepInputs): void {
    checkStepGroups(this, step, { name: 'CommVQ', held: (sq) => this.counts[layer]![sq]!.length });
    if (step.batched && step.groups.some((g, i) => g.sequence !== step.groups[0]!.sequence + i || g.tokens !== 1)) {
      throw new CommvqError('a batched step must hold one token of consecutive sequences, in order');
    }
    this.pending.set(layer, kv);
  }

  attend(layer: number, q: Tensor, step: StepInputs): Tensor {
    const kv = this.pending.get(layer);
    if (!kv) throw new Error(`attend(${layer}) before append`);
    this.pending.delete(layer);
    if (!step.isPrompt) return this.decode(layer, kv, q, step.groups);
    const g = step.groups[0]!;
    return this.prefillMode === 'faithful' ? this.prefillFaithful(layer, g, kv, q) : this.prefillStrict(layer, g, kv, q);
  }

  seek(length: number): void {
    if (length !== this.length) throw new CommvqError('the CommVQ cache cannot rewind or skip tokens (codes are not kept per step)');
  }

  /**
   * Takes sequence `s` as holding `length` tokens never written (zero codes and exact rows), split between codes
   * and the window as the decoding rule gives: measure-memory's stand-in for running a whole batch's prompts, since
   * a device store preallocates every row.
   */
  assumeFilled(s: number, length: number): void {
    if (!this.store.preallocated) throw new CommvqError('this CommVQ store grows as tokens come: it cannot take tokens as filled');
    if (length > this.capacity) throw new Error(`assumeFilled(${length}) beyond a capacity of ${this.capacity}`);
    for (const layer of this.counts) layer[s] = { length, compressed: this.rule.compressedAfter(length, 'rule') };
  }

  bytes(): number {
    return this.store.bytes(this.counts);
  }

  residentBytes(): { codebooks: number; encoders: number } {
    return this.store.residentBytes();
  }

  phaseTimes(): Record<string, number> {
    return this.store.phaseTimes?.() ?? {};
  }

  /**
   * Bytes per compressed token per layer: the packed arithmetic (keys: R·G·12 bits + a bf16 norm; values: N_c bits +
   * a bf16 scale); under an ablation the exact half costs a row of D in the activation dtype.
   */
  get compressedBytesPerToken(): { key: number; value: number } {
    const geometry = { residuals: this.residuals, codeBits: this.o.valueShape.codeBits, window: this.rule.window };
    return commvqAblationBytesPerToken(this.shape, geometry, this.o.compress ?? 'both', this.backend.activationDType);
  }

  /** The packed state of one layer and sequence, on the host (tests compare stores with it). */
  packed(layer: number, sequence = 0): PackedTokens {
    return this.store.packed(layer, sequence, this.counts[layer]![sequence]!.compressed);
  }

  /**
   * The compressed tokens of a layer dequantized (keys pre-RoPE, HF layout, and values) with their positions:
   * k̂_t = n_t·Σ_r C_r[code], v̂_t = (b_t·E)·ρ′_t ⊙ (ls + ε).
   */
  dequantized(layer: number, sequence = 0): { keys: Float32Array; values: Float32Array; positions: Int32Array } {
    const n = this.counts[layer]![sequence]!.compressed;
    const positions = Int32Array.from({ length: n }, (_, t) => this.rule.position(t));
    return { ...this.store.dequantized(layer, sequence, n), positions };
  }

  /** The prompt is complete: the store frees prompt-time scratch (the strict prefill's K/V) now, not at the first decode step. */
  endPrompt(): void {
    this.store.endPrompt();
    this.exactPrompt?.k.dispose();
    this.exactPrompt?.v.dispose();
    this.exactPrompt = undefined;
  }

  dispose(): void {
    this.endPrompt();
    this.store.dispose();
  }

  // ---- the three kinds of step ---------------------------------------------------------------------------------

  /** One token per group: flush full windows, keep the token exact, attend on codes for all groups at once. */
  private decode(layer: number, kv: LayerKV, q: Tensor, groups: readonly StepGroup[]): Tensor {
    this.endPrompt(); // decoding: the prompt's scratch is no longer needed
    this.compress(layer, groups.map((g) => ({ sequence: g.sequence, to: this.rule.visibleAt(g.start) })));
    for (const g of groups) {
      const c = this.counts[layer]![g.sequence]!;
      this.store.keepExact(layer, g.sequence, this.rule.slot(g.start, c.compressed), kv, g.row, 1);
      c.length = g.start + 1;
    }
    const tokens = groups.map((g) => {
      const c = this.counts[layer]![g.sequence]!;
      return { sequence: g.sequence, row: g.row, compressed: c.compressed, exact: c.length - c.compressed };
    });
    return this.store.attendTokens(layer, q, tokens);
  }

  /**
   * Exact attention over the prompt (§6.3), then its whole blocks compressed and the rest kept exact. A prompt may
   * come in chunks if they come layer by layer (LlamaModel.prefill): the layer's exact keys and values of earlier
   * chunks wait in a prompt buffer until the prompt ends.
   */
  private prefillFaithful(layer: number, g: StepGroup, kv: LayerKV, q: Tensor): Tensor {
    const b = this.backend;
    const end = g.start + g.tokens;
    const rows = this.promptRows(layer, g);
    b.writeRows(rows.k, g.start, kv.k);
    b.writeRows(rows.v, g.start, kv.v);
    rows.length = end;
    const { queryHeads, kvHeads, headDim } = this.shape;
    const out = b.attention(q, rows.k, rows.v, { queryHeads, kvHeads, headDim, qStart: g.start, kvLength: end });
    this.compress(layer, [{ sequence: g.sequence, to: this.rule.compressedAfter(end, 'faithful'), step: g }], kv);
    this.keepChunk(layer, g, kv);
    return out;
  }

  /** The faithful prompt buffer for a chunk: taken over by the first chunk of a layer, continued by the next ones. */
  private promptRows(layer: number, g: StepGroup): ExactPrompt {
    if (g.start === 0) {
      const D = this.shape.kvHeads * this.shape.headDim;
      const b = this.backend;
      this.exactPrompt ??= { layer, sequence: g.sequence, length: 0, k: b.zeros([this.capacity, D], b.activationDType), v: b.zeros([this.capacity, D], b.activationDType) };
      return Object.assign(this.exactPrompt, { layer, sequence: g.sequence, length: 0 });
    }
    const p = this.exactPrompt;
    if (!p || p.layer !== layer || p.sequence !== g.sequence || p.length !== g.start) {
      throw new CommvqError(
        'faithful prefill attends exactly over the whole prompt: its chunks must come layer by layer, each layer\'s after the other (LlamaModel.prefill)',
        'run the prompt whole, or with the strict prefill for chunks of tokens',
      );
    }
    return p;
  }

  /**
   * The decoding rule over a chunk of a prompt: every block that a later token of the chunk flushes is encoded first
   * (one pass), then each W-block of queries attends over the compressed tokens before it and its own block exact.
   */
  private prefillStrict(layer: number, g: StepGroup, kv: LayerKV, q: Tensor): Tensor {
    const compressedBefore = this.counts[layer]![g.sequence]!.compressed;
    const end = g.start + g.tokens;
    this.compress(layer, [{ sequence: g.sequence, to: this.rule.compressedAfter(end, 'rule'), step: g }], kv);
    const chunk = { sequence: g.sequence, start: g.start, end, compressedBefore, blocks: this.rule.queryBlocks(g.start, end) };
    const out = this.store.attendPrompt(layer, chunk, q, kv);
    this.keepChunk(layer, g, kv);
    return out;
  }

  // ---- compressing and keeping tokens --------------------------------------------------------------------------

  /**
   * Compresses tokens of each sequence up to `to` compressed tokens: those held in the window come from their exact
   * slots, the step's (positions from `step.start`) from its rows. One part per block, each with its noise stream.
   */
  private compress(layer: number, targets: readonly { sequence: number; to: number; step?: StepGroup }[], kv?: LayerKV): void {
    const parts: EncodePart[] = [];
    for (const { sequence, to, step } of targets) {
      const c = this.counts[layer]![sequence]!;
      const firstStep = step ? step.start - this.rule.sinks : Infinity; // compressed index of the step's first row
      for (const b of this.rule.blocksOf(c.compressed, to)) {
        const held = Math.max(0, Math.min(b.to, firstStep) - b.from);
        const slot = this.rule.slot(this.rule.position(b.from), c.compressed);
        const row = step ? step.row + this.rule.position(b.from + held) - step.start : 0;
        parts.push({ sequence, at: b.from, slot, held, row, rows: b.to - b.from - held, noise: this.rule.noise(this.encoding, layer, b.from) });
      }
    }
    if (parts.length > 0) this.store.encode(layer, parts, kv);
    for (const { sequence, to } of targets) {
      const c = this.counts[layer]![sequence]!;
      c.compressed = Math.max(c.compressed, to);
    }
  }

  /** After a prompt chunk: its sinks and its tokens past the last compressed one kept exact, in their slots. */
  private keepChunk(layer: number, g: StepGroup, kv: LayerKV): void {
    const c = this.counts[layer]![g.sequence]!;
    const end = g.start + g.tokens;
    const keep = (from: number, to: number) => {
      if (to > from) this.store.keepExact(layer, g.sequence, this.rule.slot(from, c.compressed), kv, g.row + from - g.start, to - from);
    };
    keep(g.start, Math.min(end, this.rule.sinks));
    keep(Math.max(g.start, this.rule.position(c.compressed)), end);
    c.length = end;
  }
}

/**
 * Refuses an ablation (compress keys or values) on a device where cacheRunsOn (cache-device.ts, the rule's one place)
 * does not run it, before any device work: for callers that build a cache without checkCachesOnDevice's list check.
 *
 *   refuseAblationOnDevice('keys', 'cuda:0')   // throws: compress=keys: the CommVQ ablations run only on the CPU reference so far ...
 */
export function refuseAblationOnDevice(compress: CompressTarget, device: string): void {
  if (cacheRunsOn({ kind: 'commvq', compress }, device)) return;
  throw new CommvqError(
    `compress=${compress}: the CommVQ ablations run only on the CPU reference so far (run with --device cpu); their GPU path comes with issue 18’s kernels`,
  );
}

/** The options with their defaults (window W = 128, no sinks, one sequence), the rule, and the codebooks checked. */
export function storeSettings(shape: CacheShape, o: CommvqCacheOptions): StoreSettings {
  const residuals = checkCodebooks(shape, o);
  return { shape, options: o, rule: new CommvqRule(o.window ?? DEFAULT_WINDOW, o.sinks ?? 0), batch: o.batch ?? 1, capacity: o.capacity, residuals };
}

/**
 * Checks that codebooks fit a cache: a key codebook and a value compressor for every layer, G = H_kv groups of
 * D_h channels, the same R in every layer, values of D = H_kv·D_h channels. Returns R. `names` puts file names
 * into the messages.
 */
export function checkCodebooks(
  shape: CacheShape,
  books: Pick<CommvqCacheOptions, 'keys' | 'values' | 'valueShape'>,
  names: { key: string; value: string } = { key: 'key codebook', value: 'value codebook' },
): number {
  const D = shape.kvHeads * shape.headDim;
  if (books.valueShape.featDim !== D) throw new CommvqError(`${names.value}: made for values of ${books.valueShape.featDim} channels, the model's have ${D}`);
  let residuals = 0;
  for (let l = 0; l < shape.numLayers; l++) {
    const key = books.keys.get(l);
    if (!key) throw new CommvqError(`${names.key}: no codebook for layer ${l}`, 'train every layer: commvq train-key RUN_DIR --layers all');
    if (!books.values.has(l)) throw new CommvqError(`${names.value}: no compressor for layer ${l}`, 'train every layer: commvq train-value RUN_DIR ...');
    const { groups, pairs, residuals: R } = key.shape;
    if (groups !== shape.kvHeads || 2 * pairs !== shape.headDim) {
      throw new CommvqError(`${names.key}: made for ${groups} KV heads of ${2 * pairs}, the model has ${shape.kvHeads} of ${shape.headDim}`);
    }
    if (l > 0 && R !== residuals) throw new CommvqError(`${names.key}: layer ${l} has ${R} stages, layer 0 has ${residuals}`);
    residuals = R;
  }
  return residuals;
}
