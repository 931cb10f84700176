/**
 * `commvq measure-memory` as a library call: a plan (grid points and max-batch searches) measured through one
 * MemoryProbe (memory-probe.ts). On a GPU the probe loads the model and measures; on the CPU the AccountingProbe
 * below fills every point from the arithmetic (cache-accounting.ts) and the model's config, and says that it
 * measures nothing (`measures: false`).
 *
 *   const { config } = readMemoryModelConfig({ randomWeights: 'llama-3.1-8b.config.json' });
 *   const probe = new AccountingProbe(config, { decodeTokens: 16 });
 *   const m = await measureMemory(probe, { points: [{ cache: 'commvq', bits: 1, context: 131072, batch: 1 }] });
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { COMMVQ_DEFAULTS, INT_DEFAULTS, KIVI_DEFAULTS, resolveCacheSpec, type CacheSpec, type CommvqCacheSpec, type Fp8CacheSpec, type IntCacheSpec, type KiviCacheSpec } from '../cache-spec.js';
import { intLabel, kiviLabel } from '../peers/peer-labels.js';
import { attentionStages } from '../commvq/attention-theta.js';
import type { PrefillMode } from '../commvq/commvq-cache.js';
import { loadSpecCodebooks } from '../commvq/load-commvq.js';
import { commvqGeometry as geometryOfBits, DEFAULT_WINDOW, type Bits } from '../commvq/geometry.js';
import { CommvqError, OptionError } from '../errors.js';
import { readKeyCodebookMeta } from '../keys/format.js';
import { checkModelFolder } from '../model/load-model.js';
import type { LlamaModel } from '../model/llama.js';
import { parseModelConfig, type ModelConfig } from '../model/config.js';
import { expectedTensors } from '../model/weights.js';
import { bytesPerElement, type DType } from '../tensor/dtype.js';
import { readValueCodebookShape } from '../values/value-codebook-file.js';
import { compressorShape } from '../values/value-compressor.js';
import { codebookBytes, type CacheGeometry, type CommvqGeometry } from './cache-accounting.js';
import { cacheArithmetic } from './cache-cost.js';
import { findMaxBatch, type MaxBatchResult } from './max-batch.js';
import type { MemoryCacheKind, MemoryPointResult, MemoryPointSpec, MemoryProbe, MemoryProbeProgress } from './memory-probe.js';

export const GiB = 2 ** 30;

/**
 * One cache a run measures, as the probes take it: a CacheSpec resolved by memoryCacheSettings (its bit width known,
 * its codebook files found; none for dense, none with random weights: random ones).
 */
export interface CacheSetting {
  readonly cache: MemoryCacheKind;
  /** CommVQ or KIVI bits per value; absent for dense, int4/int2 and fp8 */
  readonly bits?: Bits;
  /** KIVI and int4/int2: group and residual, defaults filled in */
  readonly group?: number;
  readonly residual?: number;
  /** CommVQ's prompt attention, the spec's prefill= or COMMVQ_DEFAULTS.prefill; absent for dense */
  readonly prefillMode?: PrefillMode;
  readonly keyCodebook?: string;
  readonly valueCodebook?: string;
}

/** The device: auto, cpu, cuda or cuda:N. */
export type DeviceName = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;

/** What a probe is opened with: the model (a folder, or a config.json for random weights), the caches, the device. */
export interface ProbeOptions {
  readonly model: string | undefined;
  /** a config.json (or a folder holding one): seeded random weights, and random codebooks where none are given */
  readonly randomWeights: string | undefined;
  /** every cache the plan's points use; the probe loads what they need once */
  readonly caches: readonly CacheSetting[];
  readonly device: DeviceName;
  /** tokens decoded after the prompt at each point (the decode peak and the time per token come from these) */
  readonly decodeTokens: number;
  /**
   * the device size points must fit (bytes). On a GPU, the card to behave as: the allocator is capped so that the
   * process, its CUDA context included, holds at most this much (absent: the card's own memory). On the CPU, the
   * size resident bytes are checked against (absent: 80 GiB).
   */
  readonly deviceBytes?: number;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite; only a GPU probe loads the weights) */
  readonly allowNonFinite?: boolean;
}

export type ProbeFactory = (o: ProbeOptions) => Promise<MemoryProbe>;

/** The grid: points measured as given, and max-batch searches (one per cache and context). */
export interface MemoryPlan {
  readonly points: readonly MemoryPointSpec[];
  readonly maxBatch?: { readonly targets: readonly Omit<MemoryPointSpec, 'batch'>[]; readonly limit: number };
}

export interface MemoryMeasurement {
  readonly device: string;
  readonly measures: boolean;
  readonly points: MemoryPointResult[];
  readonly maxBatch: MaxBatchResult[];
}

/** Progress over the plan: which point runs (`index` of `total` planned; max-batch trials count one each) and its phase. */
export interface MeasureProgress {
  readonly index: number;
  readonly total: number;
  readonly spec: MemoryPointSpec;
  readonly phase: 'load' | 'prefill' | 'decode' | 'done';
}

/**
 * Measures every point of the plan, then runs each max-batch search; a point that does not fit is a result
 * (fits: false), not an error. A spec is probed once: a search's trial that the grid holds reuses its result.
 *
 *   const m = await measureMemory(probe, { points, maxBatch: { targets: [{ cache: 'dense', context: 32768 }], limit: 1024 } });
 */
export async function measureMemory(probe: MemoryProbe, plan: MemoryPlan, onProgress?: (p: MeasureProgress) => void): Promise<MemoryMeasurement> {
  let index = 0;
  // a search's trial count is unknown up front: count ~log2(limit) + a few per search for the bar
  const searchGuess = plan.maxBatch ? plan.maxBatch.targets.length * (2 * Math.ceil(Math.log2(plan.maxBatch.limit)) + 1) : 0;
  let total = plan.points.length + searchGuess;
  const done = new Map<string, MemoryPointResult>(); // a search's trial that the grid already measured is not run again
  const run = async (spec: MemoryPointSpec): Promise<MemoryPointResult> => {
    const base = `${cacheLabel(spec)}/${spec.context}/${spec.batch}`;
    const key = `${base}/${spec.prefill ?? 'run'}`;
    // a point measured with its prompt run answers a trial that would only reserve the prompt's workspace
    const known = done.get(key) ?? (spec.prefill === 'reserve' ? done.get(`${base}/run`) : undefined);
    if (known) return known;
    total = Math.max(total, index + 1);
    const report: MemoryProbeProgress = (phase) => onProgress?.({ index, total, spec, phase });
    const result = await probe.probe(spec, report);
    done.set(key, result);
    index += 1;
    onProgress?.({ index, total, spec, phase: 'done' });
    return result;
  };
  const points: MemoryPointResult[] = [];
  for (const spec of plan.points) points.push(await run(spec));
  const maxBatch: MaxBatchResult[] = [];
  for (const target of plan.maxBatch?.targets ?? []) {
    // batch 1 runs its prompt and measures the prefill workspace; the trials reserve that workspace instead of
    // running a prompt each (the memory held is the same: the other sequences' prompts never run in any case)
    const first = await run({ ...target, batch: 1 });
    const trial = (spec: MemoryPointSpec) => (spec.batch === 1 ? Promise.resolve(first) : run({ ...spec, prefill: 'reserve' }));
    maxBatch.push(await findMaxBatch(trial, target, { limit: plan.maxBatch!.limit }));
  }
  return { device: probe.device, measures: probe.measures, points, maxBatch };
}

// ---- the grid ------------------------------------------------------------------------------------------------------

/**
 * How far above the driver's total memory a requested device size still names the card itself. The driver gives
 * CUDA a little less than the card's nominal size: on an H100 80GB its total is 79.18 GiB, while nvidia-smi (and the
 * README) say 79.65 GiB (0.6% above) and the card's name 80 (1.04% above). 2% takes both and refuses 81.
 */
export const DEVICE_MEMORY_MARGIN = 0.02;

/**
 * The device size a GPU run measures against (bytes), for `requested` on a card whose driver reports `total`:
 * up to `total` as asked (a smaller card to behave as); up to DEVICE_MEMORY_MARGIN above it, the card's own
 * `total` (the nominal size names the card, and no more than the card has can be measured); above that refused,
 * since a larger card would report fits that the allocator cannot give.
 *
 *   checkDeviceMemory(79.65 * GiB, 79.18 * GiB, 'NVIDIA H100 80GB HBM3')   // 79.18 GiB: the card itself
 *   checkDeviceMemory(24 * GiB, 79.18 * GiB, 'NVIDIA H100 80GB HBM3')      // 24 GiB: a smaller card
 */
export function checkDeviceMemory(requested: number, total: number, device: string): number {
  const accepted = total * (1 + DEVICE_MEMORY_MARGIN);
  if (requested > accepted) {
    const problem = `more than ${device} has (${(total / GiB).toFixed(2)} GiB by its driver; up to ${(accepted / GiB).toFixed(2)} GiB is taken as the card itself)`;
    throw new OptionError('deviceBytes', `${(requested / GiB).toFixed(2)} GiB`, problem, 'give a size up to the card’s, or leave it out');
  }
  return Math.min(requested, total);
}

/** `131072` → `128K`, `20000` → `20000`: context labels for tables and plots. */
export function contextLabel(tokens: number): string {
  if (tokens % 1024 ** 2 === 0) return `${tokens / 1024 ** 2}M`;
  return tokens % 1024 === 0 ? `${tokens / 1024}K` : String(tokens);
}

/**
 * Per cache label, the point whose allocated bytes per token stand for the cache: the longest context that fit, where
 * a buffer's fixed part (the exact window, the rotation table, allocator rounding) weighs least; a cache with no point
 * that fit keeps its first.
 */
export function bytesPerTokenPoints<P extends { cache: string; context: number; fits: boolean }>(points: readonly P[]): Map<string, P> {
  const out = new Map<string, P>();
  for (const p of points) {
    const held = out.get(p.cache);
    if (!held || (p.fits && (!held.fits || p.context > held.context))) out.set(p.cache, p);
  }
  return out;
}

/**
 * `dense`, `commvq-1bit`, `commvq-1bit-strict`, `kivi-2bit-g32-r128`, `int4-g64`, `fp8`: one name per cache setting,
 * as the report, the plots and the progress bar label them (the peer caches as their factories do). A CommVQ prefill
 * mode other than the default (COMMVQ_DEFAULTS.prefill, faithful) is named.
 */
export function cacheLabel(s: { cache: MemoryCacheKind; bits?: number; prefillMode?: PrefillMode; group?: number; residual?: number }): string {
  if (s.cache === 'dense' || s.cache === 'fp8') return s.cache;
  const d = s.cache === 'kivi' ? KIVI_DEFAULTS : INT_DEFAULTS;
  if (s.cache === 'kivi') return kiviLabel(s.bits ?? 2, s.group ?? d.group, s.residual ?? d.residual);
  if (s.cache === 'int4' || s.cache === 'int2') return intLabel(s.cache, s.group ?? d.group, s.residual ?? d.residual);
  const mode = prefillModeOf(s);
  return `commvq-${s.bits ?? 1}bit${mode === COMMVQ_DEFAULTS.prefill ? '' : `-${mode}`}`;
}

/** A setting's CommVQ prefill mode, the default where it names none; null for the others (their own prompt rules). */
export function prefillModeOf(s: { cache: MemoryCacheKind; prefillMode?: PrefillMode }): PrefillMode | null {
  return s.cache !== 'commvq' ? null : (s.prefillMode ?? COMMVQ_DEFAULTS.prefill);
}

// ---- the model and its codebooks -----------------------------------------------------------------------------------

/**
 * The config of a model folder (DIR/config.json) or of random weights (a config.json, or a folder holding one). A
 * model folder is checked as generate checks it (checkModelFolder: its safetensors headers against the config),
 * although the CPU's accounting reads no weights: a corrupt checkpoint is an error, not a report.
 */
export function readMemoryModelConfig(o: { model?: string; randomWeights?: string }): { config: ModelConfig; source: string; name: string } {
  if (o.model) return { config: checkModelFolder(o.model), source: join(o.model, 'config.json'), name: basename(resolve(o.model)) };
  const given = o.randomWeights;
  if (!given) throw new OptionError('model', undefined, 'give a model folder, or a config.json for random weights');
  const isDir = existsSync(given) && statSync(given).isDirectory();
  const path = isDir ? join(given, 'config.json') : given;
  if (!existsSync(path)) throw new CommvqError(`${path}: model config not found`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CommvqError(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  const name = isDir ? basename(resolve(given)) : basename(path).replace(/(\.config)?\.json$/, '') || basename(dirname(resolve(path)));
  return { config: parseModelConfig(json, path), source: path, name };
}

/** Refuses contexts beyond max_position_embeddings (the decoded tokens run past the context, as generation does). */
export function checkContexts(contexts: readonly number[], config: ModelConfig, source: string): void {
  for (const c of contexts) {
    if (c > config.maxPositionEmbeddings) {
      throw new OptionError('context', contextLabel(c), `${c} tokens is beyond the model's limit of ${config.maxPositionEmbeddings} (max_position_embeddings in ${source})`);
    }
  }
}

/**
 * The caches a run measures, from their specs: codebooks found and checked (run= and bits=, or key= and value=,
 * whose bit width is read from the files' footers); with random weights, a CommVQ spec without codebooks means random
 * ones of its bits. CommVQ keeps its prefill= (default COMMVQ_DEFAULTS.prefill): one bit width in both modes is two
 * caches, which must share their codebooks (the probes hold one set per bit width). Every prompt here runs in the
 * model's row chunks (prefillRows) with argmax codes, so encoding=, seed= and chunk= are refused, as is the same cache twice.
 * With `model` (its cache shape), codebook files are loaded and checked against it as generate checks them
 * (loadSpecCodebooks): a codebook of another model is refused, not accounted with the wrong geometry.
 *
 *   await memoryCacheSettings([{ kind: 'dense' }, { kind: 'commvq', bits: 1, run: 'runs/a', prefill: 'strict' }], { randomWeights: false })
 */
export async function memoryCacheSettings(specs: readonly CacheSpec[], o: { randomWeights: boolean; model?: Pick<LlamaModel, 'cacheShape'> }): Promise<CacheSetting[]> {
  const out: CacheSetting[] = [];
  for (const spec of specs) {
    const { encoding, seed, chunk } = spec as CommvqCacheSpec;
    if ([encoding, seed, chunk].some((v) => v !== undefined)) {
      throw new OptionError('cache', undefined, 'measure-memory runs every prompt as generate does (layer by layer, in the model’s row chunks), with argmax value codes: encoding=, seed= and chunk= are not taken (prefill= is)');
    }
    if (spec.kind === 'commvq' && (spec.compress ?? COMMVQ_DEFAULTS.compress) !== 'both') {
      throw new OptionError('cache', undefined, `measure-memory does not measure compress=${spec.compress} yet: the CommVQ ablations are a CPU reference (issue 18)`);
    }
    const r = resolveCacheSpec(spec, { random: o.randomWeights });
    if (o.model && r.kind === 'commvq' && r.key) loadSpecCodebooks(o.model, { key: r.key, value: r.value!, bits: r.bits });
    const setting: CacheSetting =
      r.kind === 'dense'
        ? { cache: 'dense' }
        : r.kind === 'commvq'
          ? { cache: 'commvq', bits: await commvqBits(spec as CommvqCacheSpec), prefillMode: r.prefill ?? COMMVQ_DEFAULTS.prefill, ...(r.key ? { keyCodebook: r.key, valueCodebook: r.value } : {}) }
          : peerSetting(r);
    if (out.some((c) => cacheLabel(c) === cacheLabel(setting))) throw new OptionError('cache', undefined, `${cacheLabel(setting)} is given twice`);
    const other = out.find((c) => c.cache === 'commvq' && c.bits === setting.bits);
    if (other && (other.keyCodebook !== setting.keyCodebook || other.valueCodebook !== setting.valueCodebook)) {
      throw new OptionError('cache', undefined, `${cacheLabel(other)} and ${cacheLabel(setting)} have different codebooks: give both modes of a bit width the same ones`);
    }
    out.push(setting);
  }
  return out;
}

/** A peer cache's setting: its kind with the spec's bits, group and residual, defaults filled in. */
function peerSetting(spec: KiviCacheSpec | IntCacheSpec | Fp8CacheSpec): CacheSetting {
  if (spec.kind === 'fp8') return { cache: 'fp8' };
  const d = spec.kind === 'kivi' ? KIVI_DEFAULTS : INT_DEFAULTS;
  const shared = { group: spec.group ?? d.group, residual: spec.residual ?? d.residual };
  return spec.kind === 'kivi' ? { cache: 'kivi', bits: spec.bits!, ...shared } : { cache: spec.kind, ...shared };
}

/** A CommVQ spec's bit width: its `bits` for a run folder or random codebooks, else its value codebook's (footer), checked against `bits`. */
async function commvqBits(spec: CommvqCacheSpec): Promise<Bits> {
  if (spec.value === undefined) return spec.bits!;
  const { bits } = await readValueCodebookShape(spec.value);
  if (spec.bits !== undefined && spec.bits !== bits) throw new CommvqError(`${spec.value}: a ${bits}-bit value codebook, not the ${spec.bits}-bit one the cache asks for`);
  return bits;
}

/** Every (cache, context, batch) of the grid, caches outermost. */
export function gridPoints(caches: readonly CacheSetting[], contexts: readonly number[], batches: readonly number[]): MemoryPointSpec[] {
  const cache = (s: CacheSetting) => ({
    cache: s.cache, ...(s.bits ? { bits: s.bits } : {}), ...(s.prefillMode ? { prefillMode: s.prefillMode } : {}),
    ...(s.group !== undefined ? { group: s.group, residual: s.residual } : {}),
  });
  return caches.flatMap((s) => contexts.flatMap((context) => batches.map((batch) => ({ ...cache(s), context, batch }))));
}

// ---- opening a probe ---------------------------------------------------------------------------------------------

/**
 * The probe for a device: the AccountingProbe on the CPU (and on `auto` without a GPU), the GPU probe otherwise.
 * The GPU probe is loaded on first use, so a build without it still measures on the CPU.
 */
export async function openMemoryProbe(o: ProbeOptions, accounting: { config: ModelConfig }, loadGpu = loadGpuProbeFactory): Promise<MemoryProbe> {
  const useGpu = o.device === 'cpu' ? false : o.device === 'auto' ? await gpuPresent() : true;
  if (!useGpu) {
    return new AccountingProbe(accounting.config, { decodeTokens: o.decodeTokens, deviceBytes: o.deviceBytes, geometry: await fileGeometries(o.caches) });
  }
  const create = await loadGpu();
  return create(o);
}

async function gpuPresent(): Promise<boolean> {
  try {
    const cuda = await import('../backend/cuda/cuda-backend.js');
    return cuda.cudaAvailable();
  } catch {
    return false; // no driver or no FFI: auto falls back to the CPU
  }
}

const NO_GPU_PROBE_HINT = 'measure on the CPU (device cpu) for the byte accounting';

/** The GPU probe's factory, or a one-line error when this build has none. `importer` is replaceable for tests. */
export async function loadGpuProbeFactory(importer: () => Promise<unknown> = importGpuProbe): Promise<ProbeFactory> {
  let module: { createGpuMemoryProbe?: ProbeFactory };
  try {
    module = (await importer()) as { createGpuMemoryProbe?: ProbeFactory };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    // only the probe's own file missing means "not in this build"; a module it imports missing is a real error
    if (e.code === 'ERR_MODULE_NOT_FOUND' && /Cannot find module '[^']*gpu-memory-probe\.js'/.test(e.message ?? '')) throw new CommvqError('GPU memory measurement is not available in this build', NO_GPU_PROBE_HINT);
    throw err;
  }
  if (typeof module.createGpuMemoryProbe !== 'function') throw new CommvqError('GPU memory measurement is not available in this build', NO_GPU_PROBE_HINT);
  return module.createGpuMemoryProbe;
}

function importGpuProbe(): Promise<unknown> {
  const path = './gpu-memory-probe.js'; // not a literal: the file may be absent from a build, which the caller reports
  return import(path);
}

// ---- the CPU accounting path ---------------------------------------------------------------------------------------

/** R and N_c of the codebook files a run names (bits → geometry); bit widths without files keep the standard one. */
export async function fileGeometries(caches: readonly CacheSetting[]): Promise<Map<number, CommvqGeometry>> {
  const out = new Map<number, CommvqGeometry>();
  for (const c of caches) {
    if (c.cache !== 'commvq' || !c.keyCodebook || !c.valueCodebook) continue;
    // from the files' footers: a codebook of a real model is hundreds of MB (the value encoders), its geometry a few bytes
    const key = await readKeyCodebookMeta(c.keyCodebook);
    const value = await readValueCodebookShape(c.valueCodebook);
    out.set(c.bits ?? 1, { residuals: key.residuals, codeBits: value.codeBits, window: DEFAULT_WINDOW });
  }
  return out;
}

/** CommVQ's standard geometry at `bits` for a model's value width D = H_kv·D_h (commvq/geometry.ts). */
export function commvqGeometry(config: ModelConfig, bits: Bits): CommvqGeometry {
  return geometryOfBits(bits, config.numKvHeads * config.headDim);
}

export function cacheGeometry(config: ModelConfig): CacheGeometry {
  return { numLayers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim };
}

/** Parameters of the model a config describes (every tensor expectedTensors lists). */
export function parameterCount(config: ModelConfig): number {
  let n = 0;
  for (const shape of expectedTensors(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Value-encoder parameters of all layers (spec §5.2): LayerNorm γ, β [D]; enc1 [inter, D] + bias; out [4·n_e, inter]
 * + bias; and the frozen per-channel scale [D], which decoding multiplies by. The codebook E is counted apart.
 */
export function encoderParameterCount(config: ModelConfig, bits: Bits): number {
  const s = compressorShape(bits, config.numKvHeads * config.headDim);
  const perLayer = 2 * s.featDim + s.inter * s.featDim + s.inter + s.embedDim * s.inter + s.embedDim + s.featDim;
  return config.numLayers * perLayer;
}

export interface AccountingOptions {
  decodeTokens: number;
  /** dtype of weights and encoders (default bf16, as the GPU backend holds them) */
  weightDType?: DType;
  /** R and N_c per bit width where codebook files say them (default: the standard geometry) */
  geometry?: ReadonlyMap<number, CommvqGeometry>;
  /** the device size a point is checked against (default 80 GiB, an H100's nominal size): resident bytes only */
  deviceBytes?: number;
}

/**
 * A MemoryProbe without a device: every point from the arithmetic. Weights = parameters × dtype bytes; cache =
 * cacheBytes(context + decodeTokens) × batch (allocated taken equal to it: nothing is allocated); codebooks = key θ
 * in f32 and f16 and value E in bf16 (codebookBytes); encoders as §5.2. A point fits when those resident bytes fit the
 * assumed device; activations are not counted, so the CPU's max batch is an upper bound. The CommVQ prefill mode
 * changes none of these (only the prompt's workspace, which is not counted): a point keeps it in its spec, for its label.
 */
export class AccountingProbe implements MemoryProbe {
  readonly device = 'cpu';
  readonly measures = false;

  constructor(
    readonly config: ModelConfig,
    readonly options: AccountingOptions,
  ) {}

  async probe(spec: MemoryPointSpec): Promise<MemoryPointResult> {
    return accountPoint(this.config, spec, this.options);
  }

  dispose(): void {}
}

/** One point by arithmetic (what AccountingProbe returns). */
export function accountPoint(config: ModelConfig, spec: MemoryPointSpec, o: AccountingOptions): MemoryPointResult {
  const dtypeBytes = bytesPerElement(o.weightDType ?? 'bf16');
  const deviceBytes = o.deviceBytes ?? 80 * GiB;
  const g = cacheGeometry(config);
  const tokens = spec.context + o.decodeTokens;
  const commvq = spec.cache === 'commvq' ? (o.geometry?.get(spec.bits ?? 1) ?? commvqGeometry(config, spec.bits ?? 1)) : undefined;
  const arithmetic = cacheArithmetic(g, spec, tokens, commvq);
  const cache = arithmetic.cache * spec.batch;
  const perToken = arithmetic.perToken;
  let codebooks = 0;
  let encoders = 0;
  if (commvq) {
    // θ in f32 (encoding) and in f16 (attention on codes), E in bf16, as the device cache holds them
    const attention = { ...commvq, residuals: attentionStages(commvq.residuals) };
    codebooks = codebookBytes(g, commvq, { dtype: 'f32' }).key + codebookBytes(g, attention, { dtype: 'f16' }).key + codebookBytes(g, commvq, { dtype: 'bf16' }).value;
    encoders = encoderParameterCount(config, spec.bits ?? 1) * dtypeBytes; // bf16, as the device cache holds them
  }
  const breakdown = { weights: parameterCount(config) * dtypeBytes, cacheArithmetic: cache, cacheAllocated: cache, codebooks, encoders };
  const resident = breakdown.weights + cache + codebooks + encoders;
  const fits = resident <= deviceBytes;
  return {
    spec,
    fits,
    ...(fits ? {} : { reason: `resident bytes ${(resident / GiB).toFixed(2)} GiB exceed the assumed ${(deviceBytes / GiB).toFixed(2)} GiB (arithmetic)` }),
    breakdown,
    bytesPerToken: { arithmetic: perToken, allocated: perToken },
    deviceBytes,
  };
}
