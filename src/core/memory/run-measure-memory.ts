/**
 * `commvq measure-memory` as one library call: the caches (CacheSpecs) resolved, the grid planned, every point and
 * max-batch search measured through the device's probe, and the report document made (and written with `out`).
 *
 *   const { doc } = await runMeasureMemory({
 *     randomWeights: 'llama-3.1-8b.config.json', caches: [{ kind: 'dense' }, { kind: 'commvq', bits: 1 }],
 *     contexts: [32768], batches: [1], decodeTokens: 16, device: 'cpu', command: 'commvq measure-memory ...',
 *   });
 */
import type { CacheSpec } from '../cache-spec.js';
import { cacheShapeOf } from '../model/kv-cache.js';
import {
  checkContexts, gridPoints, measureMemory, memoryCacheSettings, openMemoryProbe, readMemoryModelConfig, type DeviceName, type MemoryPlan, type MeasureProgress,
} from './measure-memory.js';
import { memoryReportDocument, writeMemoryOutputs, type MemoryReportDocument } from './memory-report.js';

export interface MeasureMemoryRunOptions {
  /** a model folder, or (randomWeights) a config.json for seeded random weights and random codebooks where none are given */
  model?: string;
  randomWeights?: string;
  caches: readonly CacheSpec[];
  /** tokens per sequence held when decoding starts */
  contexts: readonly number[];
  batches: readonly number[];
  /** search the largest batch that fits at each cache and context, trying up to `limit` */
  maxBatch?: { limit: number };
  decodeTokens: number;
  /** the device size points must fit, in bytes (measure-memory.ts ProbeOptions) */
  deviceBytes?: number;
  /** load weights holding NaN or Inf (ProbeOptions' allowNonFinite) */
  allowNonFinite?: boolean;
  device: DeviceName;
  /** the command line, recorded in the report */
  command: string;
  /** a folder to write memory.json and the plots into */
  out?: string;
  onProgress?: (p: MeasureProgress) => void;
}

/** Measures the grid and returns the report document and the files written (none without `out`). */
export async function runMeasureMemory(o: MeasureMemoryRunOptions): Promise<{ doc: MemoryReportDocument; files: string[] }> {
  const model = readMemoryModelConfig({ model: o.model, randomWeights: o.randomWeights });
  checkContexts(o.contexts, model.config, model.source);
  // the model and its codebooks are checked as generate checks them, before anything is measured or written
  const caches = await memoryCacheSettings(o.caches, { randomWeights: o.randomWeights !== undefined, model: { cacheShape: cacheShapeOf(model.config) } });
  const targets = o.maxBatch ? gridPoints(caches, o.contexts, [0]).map(({ batch: _, ...target }) => target) : [];
  const plan: MemoryPlan = { points: gridPoints(caches, o.contexts, o.batches), ...(o.maxBatch && targets.length ? { maxBatch: { targets, limit: o.maxBatch.limit } } : {}) };
  const probe = await openMemoryProbe(
    { model: o.model, randomWeights: o.randomWeights, caches, device: o.device, decodeTokens: o.decodeTokens, deviceBytes: o.deviceBytes, allowNonFinite: o.allowNonFinite },
    { config: model.config },
  );
  let measurement;
  try {
    measurement = await measureMemory(probe, plan, o.onProgress);
  } finally {
    probe.dispose();
  }
  const doc = memoryReportDocument(measurement, { command: o.command, model, decodeTokens: o.decodeTokens });
  return { doc, files: o.out ? await writeMemoryOutputs(o.out, doc) : [] };
}
