/**
 * What one measure-memory point is and what measuring it returns. A `MemoryProbe` runs one point on a device (the
 * GPU probe: load, prefill in chunks, decode, read the allocator's counters and the driver's free memory); the
 * command and the max-batch search only see this interface, so they are tested on the CPU with a fake probe.
 *
 * Every size is in bytes; every time in milliseconds.
 */
import type { PrefillMode } from '../commvq/commvq-cache.js';

/** The caches measure-memory measures: dense, CommVQ, and the peer caches of issue 18. */
export type MemoryCacheKind = 'dense' | 'commvq' | 'kivi' | 'int4' | 'int2' | 'fp8';

/** One point of the grid: a cache, a context length and a batch. */
export interface MemoryPointSpec {
  readonly cache: MemoryCacheKind;
  /** CommVQ or KIVI bits per value (1 or 2); absent for the others */
  readonly bits?: 1 | 2;
  /** KIVI and int4/int2: the group (tokens or channels) and residual (exact tokens) of the spec, defaults filled in */
  readonly group?: number;
  readonly residual?: number;
  /**
   * CommVQ's prompt attention (CommvqCache.prefillMode); absent: COMMVQ_DEFAULTS.prefill (faithful); ignored for
   * dense. Not `prefill` below, which says whether the prompt runs at all.
   */
  readonly prefillMode?: PrefillMode;
  /** tokens per sequence held when decoding starts (the prompt) */
  readonly context: number;
  /** sequences decoded together */
  readonly batch: number;
  /**
   * `run` (default): sequence 0's prompt runs for real, in chunks. `reserve`: a max-batch trial; instead of running
   * it, a block the size of the prefill workspace measured at batch 1 (same cache, prefillMode and context) is
   * allocated beside the batch's cache: the same memory question, answered in a fraction of the time.
   */
  readonly prefill?: 'run' | 'reserve';
}

/** Resident bytes by owner, as the allocator holds them (arithmetic where it says so). */
export interface MemoryBreakdown {
  /** model weights */
  readonly weights: number;
  /** the cache by the packed arithmetic (spec §7.5; cache-accounting.ts), for `context + decodeTokens` tokens × batch */
  readonly cacheArithmetic: number;
  /** the cache's device buffers as allocated (preallocated capacity, exact window, padding) */
  readonly cacheAllocated: number;
  /** key θ and value E of every layer (0 for dense) */
  readonly codebooks: number;
  /** value encoders (weights like the model's, reported apart; 0 for dense) */
  readonly encoders: number;
}

export interface MemoryPointResult {
  readonly spec: MemoryPointSpec;
  /** false when the point did not fit on the device: `reason` says where it ran out (the answer, not a crash) */
  readonly fits: boolean;
  readonly reason?: string;
  readonly breakdown: MemoryBreakdown;
  /** bytes per token per layer of one sequence: packed arithmetic and as allocated */
  readonly bytesPerToken: { readonly arithmetic: number; readonly allocated: number };
  /** the allocator's peak bytes in use during the prefill and during decoding (absent when the point did not fit) */
  readonly peakPrefill?: number;
  readonly peakDecode?: number;
  /** what the driver reported used (total − free) at those peaks' ends, including the CUDA context and the allocator's cache */
  readonly driverUsedPrefill?: number;
  readonly driverUsedDecode?: number;
  /** median decode time per step: one token for every sequence of the batch (tokens/s = batch × 1000 / this) */
  readonly decodeMsPerStep?: number;
  /** prefill wall time of the whole batch */
  readonly prefillMs?: number;
  /** GPU milliseconds of the prefill's encoding phases (CommVQ: key and value encoding); the rest is the layers' forward */
  readonly prefillPhases?: Readonly<Record<string, number>>;
  /** how the prefill peak was found: measured while the prompt ran, or the batch-1 workspace reserved (max-batch trials) */
  readonly prefillPeak?: 'measured' | 'reserved';
  /** the device's total memory */
  readonly deviceBytes: number;
}

/** Progress of one point: a phase and a fraction done. */
export type MemoryProbeProgress = (phase: 'load' | 'prefill' | 'decode', done: number, total: number) => void;

export interface MemoryProbe {
  /** `cuda:0 (NVIDIA H100 80GB HBM3)` or `cpu` */
  readonly device: string;
  /** whether peaks are measured (GPU) or only the arithmetic is known (CPU) */
  readonly measures: boolean;
  /** Measures one point. A point that runs out of memory returns fits: false; other failures throw. */
  probe(spec: MemoryPointSpec, onProgress?: MemoryProbeProgress): Promise<MemoryPointResult>;
  dispose(): void;
}
