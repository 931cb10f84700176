import { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { loadCommvqCodebooks, createCommvqCache, type CommvqCodebooks } from '../commvq/load-commvq.js';
import { randomCodebooks } from '../commvq/random-codebooks.js';
import type { KVCache } from '../model/kv-cache.js';
import type { LlamaModel } from '../model/llama.js';
import { loadModel } from '../model/load-model.js';
import { randomModel } from '../model/random-model.js';
import { SeededRandom } from '../model/seeded-random.js';
import { DEFAULT_WINDOW, type Bits } from '../commvq/geometry.js';
import type { CommvqGeometry } from '../memory/cache-accounting.js';
import { openKiviFactory } from '../peers/kivi-factory.js';
import { peerCacheFactory } from '../peers/peer-factory.js';
import { cacheArithmetic } from './cache-cost.js';
import { cacheGeometry, cacheLabel, checkDeviceMemory, commvqGeometry, prefillModeOf, readMemoryModelConfig, type CacheSetting, type ProbeOptions } from './measure-memory.js';
import type { MemoryPointResult, MemoryPointSpec, MemoryProbe, MemoryProbeProgress } from './memory-probe.js';

/**
 * measure-memory on a GPU: for each point, a cache of `batch` sequences with room for `context + decodeTokens`
 * tokens, a layer-major prefill of sequence 0 in the model's row chunks (LlamaModel.prefill with prefillRows, as
 * generate and eval run it; CommVQ in the point's prefillMode, faithful or strict), then `decodeTokens` decode steps
 * of the whole batch. A max-batch trial (`prefill: 'reserve'`) reserves the prefill workspace measured at batch 1 (same cache,
 * mode and context) instead of running the prompt. Sequences 1..B−1 are taken as filled to the same length without
 * running their prompts: caches preallocate every row, so the memory held does not depend on what
 * the rows hold, and decode time depends on lengths only (the decode steps do run for all B sequences, including
 * the window flush at block boundaries). Peaks are the caching allocator's counters (reset before each phase);
 * the driver's used memory (total − free, all processes, the CUDA context and the allocator's cached blocks
 * included) is read at the end of each phase.
 *
 *   const probe = await createGpuMemoryProbe({ model: undefined, randomWeights: 'llama-3.1-8b.json', caches, device: 'cuda', decodeTokens: 16 });
 */
export async function createGpuMemoryProbe(o: ProbeOptions): Promise<MemoryProbe> {
  const ordinal = typeof o.device === 'string' && o.device.startsWith('cuda:') ? Number(o.device.slice(5)) : 0;
  const backend = CudaBackend.create(ordinal);
  const asked = o.deviceBytes;
  // a size up to the card's nominal one is the card itself: measured against what its driver has (checkDeviceMemory)
  const deviceBytes = asked === undefined ? undefined : checkDeviceMemory(asked, backend.ctx.deviceMemory().total, backend.ctx.info.name);
  const { config } = readMemoryModelConfig({ model: o.model, randomWeights: o.randomWeights });
  const before = backend.memory().bytesInUse;
  const model = o.randomWeights ? randomModel(config, backend, { seed: 0, std: 0.02, dtype: 'bf16' }) : loadModel(o.model!, { backend, allowNonFinite: o.allowNonFinite }).model;
  backend.synchronize();
  const weights = backend.memory().bytesInUse - before;
  warmUp(model);
  if (deviceBytes !== undefined) {
    // a smaller card: what the driver holds outside the allocator (the CUDA context, cuBLAS) counts against it too
    const alloc = backend.ctx.allocator.memory();
    const outside = used(backend) - alloc.bytesInUse - alloc.bytesCached;
    backend.ctx.allocator.setLimit(deviceBytes - outside);
  }
  return new GpuMemoryProbe(backend, model, weights, { ...o, deviceBytes }, asked);
}

class GpuMemoryProbe implements MemoryProbe {
  readonly device: string;
  readonly measures = true;
  /** host codebooks per bit width, read or drawn once */
  private readonly books = new Map<number, CommvqCodebooks>();
  /** prefill workspace (peak − what was resident) measured per cache label (kind, bits, mode) and context, for max-batch trials */
  private readonly prefillWorkspace = new Map<string, number>();

  constructor(
    private readonly backend: CudaBackend,
    private readonly model: LlamaModel,
    private readonly weights: number,
    /** the probe's options, deviceBytes as checkDeviceMemory gave it: what points must fit */
    private readonly o: ProbeOptions,
    /** the device size as asked (--device-memory), where it was */
    asked: number | undefined,
  ) {
    const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
    const size = o.deviceBytes;
    const cap = size === undefined ? '' : size < asked! ? `, ${gib(asked!)} asked: the card's own ${gib(size)}` : `, behaving as a ${gib(size)} card`;
    this.device = `${backend.device} (${backend.ctx.info.name}${cap})`;
  }

  async probe(spec: MemoryPointSpec, onProgress?: MemoryProbeProgress): Promise<MemoryPointResult> {
    const b = this.backend;
    const alloc = b.ctx.allocator;
    const tokens = spec.context + this.o.decodeTokens;
    const g = cacheGeometry(this.model.config);
    const commvq = spec.cache === 'commvq' ? this.geometry(spec.bits ?? 1) : undefined;
    const { perToken, cache: arithmetic } = cacheArithmetic(g, spec, tokens, commvq);
    const deviceBytes = this.o.deviceBytes ?? b.ctx.deviceMemory().total;
    const base = {
      spec,
      breakdown: { weights: this.weights, cacheArithmetic: arithmetic * spec.batch, cacheAllocated: 0, codebooks: 0, encoders: 0 },
      bytesPerToken: { arithmetic: perToken, allocated: perToken },
      deviceBytes,
    };
    let cache: KVCache | undefined;
    try {
      onProgress?.('load', 0, 1);
      const inUse0 = alloc.memory().bytesInUse;
      if (spec.cache === 'dense') {
        cache = this.model.createDenseCache(tokens, spec.batch);
      } else if (spec.cache !== 'commvq') {
        cache = peerCache(this.model, spec, tokens);
      } else {
        const books = this.codebooks(spec.bits ?? 1);
        try {
          cache = createCommvqCache(this.model, books.books, { capacity: tokens, batch: spec.batch, prefill: prefillModeOf(spec)!, timePhases: true });
        } finally {
          books.release(); // the cache holds its own copies; a cache that did not fit holds nothing
        }
      }
      b.synchronize();
      // what the allocator holds for the cache (its blocks rounded up to 2 MiB), beside the codebooks it copied
      const resident = alloc.memory().bytesInUse - inUse0;
      const { codebooks, encoders } = cache.residentBytes?.() ?? { codebooks: 0, encoders: 0 };
      const held = resident - codebooks - encoders;
      const breakdown = { ...base.breakdown, cacheAllocated: held, codebooks, encoders };
      const allocatedPerToken = cache.bytes() / (spec.batch * tokens * g.numLayers);
      onProgress?.('load', 1, 1);

      // prefill: sequence 0 for real, in chunks, the others taken as filled to the same length; or, for a max-batch
      // trial, the workspace that prompt needed at batch 1 reserved beside this batch's cache
      alloc.resetPeak();
      const rng = new SeededRandom(spec.context + spec.batch);
      const randomIds = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * this.model.config.vocabSize));
      const workspaceKey = `${cacheLabel(spec)}/${spec.context}`;
      const reserved = spec.prefill === 'reserve' ? this.prefillWorkspace.get(workspaceKey) : undefined;
      const t0 = performance.now();
      if (reserved !== undefined) {
        alloc.alloc(reserved).free();
        for (let s = 0; s < spec.batch; s++) fillAs(cache, s, spec.context);
      } else {
        const layers = this.model.config.numLayers;
        this.model.prefill(randomIds(spec.context), cache, { onLayer: (l) => onProgress?.('prefill', l + 1, layers) }).dispose();
        b.synchronize();
        for (let s = 1; s < spec.batch; s++) fillAs(cache, s, spec.context);
        cache.endPrompt?.(); // the decode peak is without the prompt's scratch
      }
      const prefillMs = performance.now() - t0;
      const prefillPhases = cache.phaseTimes?.();
      const peakPrefill = alloc.memory().peakBytes;
      if (reserved === undefined) this.prefillWorkspace.set(workspaceKey, Math.max(0, peakPrefill - inUse0 - resident));
      const driverUsedPrefill = used(b);

      // decode: every sequence one token per step
      alloc.resetPeak();
      const times: number[] = [];
      for (let i = 0; i < this.o.decodeTokens; i++) {
        const start = performance.now();
        const logits = spec.batch === 1 ? this.model.forward(randomIds(1), cache, { logits: 'last' }) : this.model.decodeBatch(randomIds(spec.batch), cache);
        b.synchronize();
        times.push(performance.now() - start);
        logits.dispose();
        onProgress?.('decode', i + 1, this.o.decodeTokens);
      }
      const peakDecode = alloc.memory().peakBytes;
      return {
        ...base,
        fits: true,
        breakdown,
        bytesPerToken: { arithmetic: perToken, allocated: allocatedPerToken },
        peakPrefill,
        peakDecode,
        driverUsedPrefill,
        driverUsedDecode: used(b),
        decodeMsPerStep: median(times),
        prefillMs,
        ...(prefillPhases && Object.keys(prefillPhases).length > 0 ? { prefillPhases } : {}),
        prefillPeak: reserved === undefined ? 'measured' : 'reserved',
      };
    } catch (err) {
      if (!/out of memory/i.test((err as Error).message)) throw err;
      return { ...base, fits: false, reason: (err as Error).message.split('\n')[0] };
    } finally {
      cache?.dispose();
      b.synchronize();
      alloc.releaseCached(); // the next point starts from what is resident
    }
  }

  dispose(): void {
    this.backend.ctx.allocator.setLimit(Infinity);
    this.backend.ctx.allocator.releaseCached();
  }

  /** R and N_c of the codebooks a bit width uses: the files' own, or the standard ones (random codebooks). */
  private geometry(bits: Bits): CommvqGeometry {
    const files = this.fileCodebooks(bits);
    if (!files) return commvqGeometry(this.model.config, bits);
    return { residuals: files.keys.get(0)!.shape.residuals, codeBits: files.valueShape.codeBits, window: DEFAULT_WINDOW };
  }

  /** The codebook files of a bit width (both modes of a width share them), read once and kept on the host; undefined for random codebooks. */
  private fileCodebooks(bits: Bits): CommvqCodebooks | undefined {
    const setting: CacheSetting | undefined = this.o.caches.find((c) => c.cache === 'commvq' && c.bits === bits);
    if (!setting?.keyCodebook || !setting.valueCodebook) return undefined;
    let books = this.books.get(bits);
    if (!books) {
      books = loadCommvqCodebooks(this.model, setting.keyCodebook, setting.valueCodebook);
      this.books.set(bits, books);
    }
    return books;
  }

  /**
   * The codebooks of a bit width: the files given (read once, kept on the host), or random ones of the standard
   * geometry drawn on the device for this point and released once the cache has copied them.
   */
  private codebooks(bits: Bits): { books: CommvqCodebooks; release(): void } {
    const files = this.fileCodebooks(bits);
    if (files) return { books: files, release() {} };
    const books = randomCodebooks(this.model, bits);
    return { books, release: () => [...books.values.values()].forEach((v) => [...Object.values(v.params), v.scale].forEach((t) => t.dispose())) };
  }
}

/** A peer cache (KIVI, int4/int2, fp8) of a point, from the factories generate and the evals use. */
function peerCache(model: LlamaModel, spec: MemoryPointSpec, tokens: number): KVCache {
  const { group, residual } = spec;
  if (spec.cache === 'kivi') return openKiviFactory(model, { kind: 'kivi', bits: spec.bits ?? 2, group, residual }).make(tokens, spec.batch);
  if (spec.cache === 'fp8') return peerCacheFactory(model, { kind: 'fp8' }).make(tokens, spec.batch);
  if (spec.cache === 'int4' || spec.cache === 'int2') return peerCacheFactory(model, { kind: spec.cache, group, residual }).make(tokens, spec.batch);
  throw new Error(`measure-memory: ${spec.cache} is not a peer cache`);
}

/**
 * One short prompt and one decode step on a small dense cache before any point: what the backend creates once and
 * keeps (the cuBLAS workspace, loaded kernel modules) then exists before the first point, so every point's
 * workspace (peak − resident) counts it alike and a max-batch trial does not reserve it a second time.
 */
function warmUp(model: LlamaModel): void {
  const cache = model.createDenseCache(16, 1);
  try {
    model.forward(Int32Array.from([1, 2, 3, 4]), cache, { logits: 'last' }).dispose();
    model.forward(Int32Array.from([5]), cache, { logits: 'last' }).dispose();
    model.backend.synchronize();
  } finally {
    cache.dispose();
  }
}

/** Marks sequence `s` as holding `length` tokens without running them (the probe's stand-in for B−1 prompts). */
function fillAs(cache: KVCache, s: number, length: number): void {
  if (!cache.assumeFilled) throw new Error('measure-memory: this cache cannot be filled without running its prompt');
  cache.assumeFilled(s, length);
}

function used(b: CudaBackend): number {
  const { free, total } = b.ctx.deviceMemory();
  return total - free;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!;
}

