/**
 * The measure-memory report: the JSON document (format, version, device, date, command, points by owner, searches,
 * the paper's targets) and the terminal table, from the CPU accounting and from a fake GPU measurement.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AccountingProbe, GiB, measureMemory, readMemoryModelConfig, type MemoryMeasurement } from '../../src/core/memory/measure-memory.js';
import type { MemoryPointResult, MemoryPointSpec } from '../../src/core/memory/memory-probe.js';
import { formatMemoryReport, MEMORY_REPORT_FORMAT, MEMORY_REPORT_VERSION, memoryReportDocument } from '../../src/core/memory/memory-report.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const model = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });
const date = new Date('2025-01-02T03:04:05Z');
const K = 1024;

async function cpuDoc() {
  const probe = new AccountingProbe(model.config, { decodeTokens: 16 });
  const points: MemoryPointSpec[] = [
    { cache: 'dense', context: 128 * K, batch: 1 },
    { cache: 'commvq', bits: 1, context: 128 * K, batch: 1 },
    { cache: 'commvq', bits: 2, context: 128 * K, batch: 1 },
  ];
  const m = await measureMemory(probe, { points, maxBatch: { targets: [{ cache: 'commvq', bits: 1, context: 32 * K }], limit: 512 } });
  return memoryReportDocument(m, { command: 'commvq measure-memory --device cpu', model, decodeTokens: 16, date });
}

/** A GPU-like point: resident by owner, then peaks and times. */
function gpuPoint(spec: MemoryPointSpec, o: { peak: number; fits?: boolean; driver?: number }): MemoryPointResult {
  const breakdown = { weights: 15 * GiB, cacheArithmetic: GiB, cacheAllocated: 1.25 * GiB, codebooks: 0.25 * GiB, encoders: 0.5 * GiB };
  const bytesPerToken = spec.cache === 'dense' ? { arithmetic: 4096, allocated: 4096 } : { arithmetic: 264, allocated: 308 };
  if (o.fits === false) return { spec, fits: false, reason: 'out of memory in prefill layer 3', breakdown, bytesPerToken, deviceBytes: 80 * GiB };
  return {
    spec, fits: true, breakdown, bytesPerToken,
    peakPrefill: o.peak + GiB, peakDecode: o.peak, driverUsedPrefill: o.driver ?? o.peak + 2 * GiB, driverUsedDecode: o.driver ?? o.peak + 2 * GiB,
    decodeMsPerStep: 31.25, prefillMs: 12_000, deviceBytes: 80 * GiB,
    ...(spec.cache === 'commvq' ? { prefillPhases: { keys: 1500, values: 2250 } } : {}),
  };
}

describe('the measure-memory report', () => {
  it('writes a versioned JSON document with the device, date, command and every point by owner', async () => {
    const doc = await cpuDoc();
    expect(doc).toMatchObject({ format: MEMORY_REPORT_FORMAT, version: MEMORY_REPORT_VERSION, device: 'cpu', measures: false, date: '2025-01-02T03:04:05.000Z' });
    expect(doc.command).toBe('commvq measure-memory --device cpu');
    expect(doc.model).toMatchObject({ name: 'llama-3.1-8b', parameters: 8_030_261_248, layers: 32, kv_heads: 8, head_dim: 128, max_position_embeddings: 131072 });
    expect(doc.note).toMatch(/GPU/);
    const one = doc.points.find((p) => p.cache === 'commvq-1bit')!;
    expect(one).toMatchObject({ mode: 'commvq', bits: 1, prefill: 'faithful', context: 131072, batch: 1, fits: true, peak_decode: null, workspace_decode: null, decode_ms_per_step: null, tokens_per_s: null });
    expect(doc.points.find((p) => p.cache === 'dense')!.prefill).toBeNull();
    expect(one.resident).toBe(one.weights + one.cache_allocated + one.codebooks + one.encoders);
    expect(doc.max_batch[0]).toMatchObject({ cache: 'commvq-1bit', prefill: 'faithful', context: 32768, capped: false });
    expect(doc.max_batch[0]!.trials[0]).toEqual({ batch: 1, fits: true, peak_decode: null, decode_ms_per_step: null, tokens_per_s: null, reason: null });
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc); // plain JSON: no undefined, no class instances
  });

  it('leaves the peak targets undecided on the CPU and decides the per-token ones by arithmetic', async () => {
    const { summary } = await cpuDoc();
    const byId = Object.fromEntries(summary.targets.map((t) => [t.id, t]));
    expect(byId['commvq-1bit-128k-batch1-peak']).toMatchObject({ pass: null, threshold: 17.5 * GiB });
    expect(byId['commvq-1bit-32k-max-batch']).toMatchObject({ pass: null, threshold: 128 });
    expect(byId['commvq-1bit-32k-max-batch']!.value).toBeGreaterThan(128);
    expect(byId['commvq-1bit-bytes-per-token']).toMatchObject({ value: 264 / 4096, pass: true });
    expect(byId['commvq-2bit-bytes-per-token']).toMatchObject({ value: 0.125, pass: true });
  });

  it('checks the targets against measured peaks and batches, and omits targets whose points are absent', () => {
    const m: MemoryMeasurement = {
      device: 'cuda:0 (NVIDIA H100 80GB HBM3)', measures: true,
      points: [gpuPoint({ cache: 'commvq', bits: 1, context: 128 * K, batch: 1 }, { peak: 18 * GiB }), gpuPoint({ cache: 'dense', context: 128 * K, batch: 1 }, { peak: 32 * GiB })],
      maxBatch: [{ cache: 'commvq', bits: 1, context: 32 * K, maxBatch: 140, capped: false, trials: [] }],
    };
    const doc = memoryReportDocument(m, { command: 'c', model, decodeTokens: 16, date });
    const byId = Object.fromEntries(doc.summary.targets.map((t) => [t.id, t]));
    expect(byId['commvq-1bit-128k-batch1-peak']).toMatchObject({ value: 19 * GiB, pass: false }); // the prefill peak, the larger
    expect(byId['commvq-1bit-32k-max-batch']).toMatchObject({ value: 140, pass: true });
    // the target is the packed arithmetic; what the buffers hold besides is shown in the note
    expect(byId['commvq-1bit-bytes-per-token']).toMatchObject({ value: 264 / 4096, pass: true });
    expect(byId['commvq-1bit-bytes-per-token']!.note).toMatch(/as allocated at 131072 tokens: 7\.52%/);
    expect(byId['commvq-2bit-bytes-per-token']).toBeUndefined();
    const p = doc.points[0]!;
    expect(p.workspace_decode).toBe(18 * GiB - 17 * GiB);
    expect(p.workspace_prefill).toBe(19 * GiB - 17 * GiB);
    expect(p.driver_covers_peak).toBe(true);
    const none = memoryReportDocument({ ...m, points: [], maxBatch: [] }, { command: 'c', model, decodeTokens: 16, date });
    expect(none.summary.targets).toEqual([]);
  });

  it('labels the strict prefill apart, in the points, the searches and the targets', () => {
    const strict = { cache: 'commvq' as const, bits: 1 as const, prefillMode: 'strict' as const };
    const m: MemoryMeasurement = {
      device: 'cuda:0 (fake)', measures: true,
      points: [gpuPoint({ ...strict, context: 128 * K, batch: 1 }, { peak: 16 * GiB }), gpuPoint({ cache: 'commvq', bits: 1, context: 128 * K, batch: 1 }, { peak: 17 * GiB })],
      maxBatch: [{ ...strict, context: 32 * K, maxBatch: 140, capped: false, trials: [] }],
    };
    const doc = memoryReportDocument(m, { command: 'c', model, decodeTokens: 16, date });
    expect(doc.points.map((p) => [p.cache, p.prefill])).toEqual([['commvq-1bit-strict', 'strict'], ['commvq-1bit', 'faithful']]);
    expect(doc.max_batch[0]).toMatchObject({ cache: 'commvq-1bit-strict', prefill: 'strict', max_batch: 140 });
    const byId = Object.fromEntries(doc.summary.targets.map((t) => [t.id, t]));
    expect(Object.keys(byId)).toEqual(['commvq-1bit-strict-128k-batch1-peak', 'commvq-1bit-strict-32k-max-batch', 'commvq-1bit-128k-batch1-peak']);
    expect(byId['commvq-1bit-strict-128k-batch1-peak']).toMatchObject({ value: 17 * GiB, pass: true, description: 'CommVQ 1-bit (strict prefill), 128K context, batch 1: peak (prefill and decode) ≤ 17.5 GiB' });
    expect(byId['commvq-1bit-128k-batch1-peak']).toMatchObject({ value: 18 * GiB, pass: false });
    const text = formatMemoryReport(doc).join('\n');
    expect(text).toMatch(/^commvq-1bit-strict\s+128K\s+1\s+yes\s/m);
    expect(text).toMatch(/^commvq-1bit-strict\s+32K\s+140\s/m);
  });

  it('prints a table without the measured columns on the CPU', async () => {
    const lines = formatMemoryReport(await cpuDoc());
    const text = lines.join('\n');
    expect(lines[0]).toBe('measure-memory on cpu: llama-3.1-8b (8.03 B parameters), 16 decoded tokens per point');
    expect(text).toMatch(/^note: byte accounting only/m);
    const header = lines.find((l) => l.startsWith('cache '))!;
    expect(header.split(/\s{2,}/)).toEqual(['cache', 'context', 'batch', 'fits', 'weights', 'cache', 'codebooks', 'encoders', 'B/tok']);
    expect(text).toMatch(/^dense\s+128K\s+1\s+yes\s+14\.96\s+16\.00\s+0\.00\s+0\.00\s+4096$/m);
    expect(text).toMatch(/^commvq-1bit\s+128K\s+1\s+yes\s+14\.96\s+1\.05\s+0\.20\s+0\.38\s+264$/m);
    expect(text).toMatch(/^commvq-1bit\s+32K\s+236\s+1 2 4 8 16 32 64 128 256✗ 192 224 240✗ 232 236 238✗ 237✗$/m);
    expect(text).toMatch(/n\/a {2}CommVQ 1-bit, 128K context, batch 1: peak \(prefill and decode\) ≤ 17\.5 GiB: 16\.5\d GiB \(resident bytes by arithmetic/);
    expect(text).toMatch(/PASS CommVQ 2-bit cache per token ≤ 12\.5% of dense \(−87\.5%\): 12\.50%/);
  });

  it('prints peaks, workspace, driver use, time per decode step and tokens/s when measured, and flags points that did not fit', () => {
    const m: MemoryMeasurement = {
      device: 'cuda:0 (fake)', measures: true,
      points: [gpuPoint({ cache: 'commvq', bits: 1, context: 8 * K, batch: 4 }, { peak: 17 * GiB + GiB / 2, driver: 17 * GiB }), gpuPoint({ cache: 'dense', context: 128 * K, batch: 8 }, { peak: 0, fits: false })],
      maxBatch: [],
    };
    const lines = formatMemoryReport(memoryReportDocument(m, { command: 'c', model, decodeTokens: 16, date }));
    const text = lines.join('\n');
    expect(text).not.toMatch(/^note:/m);
    expect(lines.find((l) => l.startsWith('cache '))!.split(/\s{2,}/)).toContain('peak decode');
    // cache 1.00 arithmetic / 1.25 allocated; workspace 17.5 − 17.0; peak prefill 18.5; decode 17.5; driver 17.0;
    // prefill 12 s, of which 1.5 s key and 2.25 s value encoding; a step of 4 sequences in 31.25 ms: 128 tokens/s
    expect(text).toMatch(/^commvq-1bit\s+8K\s+4\s+yes\s+15\.00\s+1\.00 \/ 1\.25\s+0\.25\s+0\.50\s+0\.50\s+18\.50\s+17\.50\s+17\.00\s+12\.0 \(1\.50, 2\.25\)\s+31\.3\s+128\.0\s+264 \/ 308$/m);
    expect(text).toMatch(/^dense\s+128K\s+8\s+no\s+15\.00\s+1\.00 \/ 1\.25\s+0\.25\s+0\.50\s+—\s+—\s+—\s+—\s+—\s+—\s+—\s+4096$/m);
    expect(text).toMatch(/dense 128K × 8: out of memory in prefill layer 3/);
    expect(text).toMatch(/commvq-1bit 8K × 4: the driver reports less in use than the allocator's peak/);
  });
});
