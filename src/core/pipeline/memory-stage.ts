import { join } from 'node:path';
import { CommvqError } from '../errors.js';
import {
  AccountingProbe, checkContexts, gridPoints, measureMemory, memoryCacheSettings, openMemoryProbe, readMemoryModelConfig, type DeviceName, type ProbeOptions,
} from '../memory/measure-memory.js';
import { formatBytes } from '../memory/byte-unit.js';
import type { MemoryProbe } from '../memory/memory-probe.js';
import { memoryReportDocument, writeMemoryOutputs, type MemoryReportPoint } from '../memory/memory-report.js';
import type { PipelineStage } from './stage.js';

/**
 * measure-memory over the run's codebooks: dense and CommVQ (every bit width) at the run's contexts, batch 1.
 * On a GPU the GPU probe measures; on the CPU the AccountingProbe gives the byte accounting (spec §7.5). Writes
 * RUN_DIR/memory/ (memory.json and its plots).
 */
export const memoryStage: PipelineStage = {
  name: 'measure-memory',
  label: 'measuring memory',
  async run(ctx) {
    const s = ctx.settings;
    const model = readMemoryModelConfig({ model: ctx.modelDir });
    checkContexts(s.memoryContexts, model.config, model.source);
    const caches = await memoryCacheSettings([{ kind: 'dense' }, ...s.bits.map((bits) => ({ kind: 'commvq' as const, run: ctx.runDir, bits }))], { randomWeights: false });
    const options: ProbeOptions = { model: ctx.modelDir, randomWeights: undefined, caches, device: ctx.backend.device as DeviceName, decodeTokens: s.memoryDecodeTokens, allowNonFinite: ctx.allowNonFinite };
    const { probe, note } = await openPipelineProbe(options, model.config);
    let measurement;
    try {
      measurement = await measureMemory(probe, { points: gridPoints(caches, s.memoryContexts, [1]) }, (p) => ctx.progress(p.index, p.total, `| ${p.spec.cache} ${p.spec.context} ${p.phase}`));
    } finally {
      probe.dispose();
    }
    const doc = memoryReportDocument(measurement, { command: `commvq pipeline --out ${ctx.runDir} (measure-memory stage)`, model, decodeTokens: s.memoryDecodeTokens });
    const files = await writeMemoryOutputs(join(ctx.runDir, 'memory'), doc);
    return { ...memoryOutput(doc.points, doc.measures, note), files };
  },
};

/** The device's probe; on a GPU whose build has no GPU probe, the byte accounting, said so in the summary. */
async function openPipelineProbe(options: ProbeOptions, config: Parameters<typeof openMemoryProbe>[1]['config']): Promise<{ probe: MemoryProbe; note: string }> {
  try {
    return { probe: await openMemoryProbe(options, { config }), note: '' };
  } catch (err) {
    if (!(err instanceof CommvqError) || options.device === 'cpu') throw err;
    return { probe: new AccountingProbe(config, { decodeTokens: options.decodeTokens }), note: ` (${err.message}: byte accounting instead)` };
  }
}

function memoryOutput(points: MemoryReportPoint[], measures: boolean, note: string): { headline: string; numbers: Record<string, number | null> } {
  const numbers: Record<string, number | null> = {};
  const context = points[0]!.context;
  const dense = points.find((p) => p.mode === 'dense' && p.context === context);
  const parts: string[] = [];
  for (const p of points.filter((q) => q.context === context)) {
    numbers[`cache_bytes_${p.cache.replace('-', '_')}`] = p.cache_arithmetic;
    numbers[`bytes_per_token_${p.cache.replace('-', '_')}`] = p.bytes_per_token.arithmetic;
    if (measures) numbers[`peak_decode_${p.cache.replace('-', '_')}`] = p.peak_decode;
    const ratio = dense && p !== dense ? ` (${((100 * p.cache_arithmetic) / dense.cache_arithmetic).toFixed(1)}% of dense)` : '';
    parts.push(`${p.cache} ${formatBytes(p.cache_arithmetic)}${ratio}`);
  }
  const how = measures ? 'measured' : 'by arithmetic';
  return { headline: `cache at ${context} tokens, ${how}: ${parts.join(', ')}${note}`, numbers };
}
