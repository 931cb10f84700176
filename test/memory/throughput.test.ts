/**
 * measure-memory's decode throughput: tokens/s = batch × 1000 / ms per decode step at every timed point (grid and
 * max-batch trials), at the largest batch, the best per cache and context with its ratio to dense's, in the JSON,
 * the table and the throughput plot; none on the CPU, which times nothing.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AccountingProbe, gridPoints, measureMemory, readMemoryModelConfig, type CacheSetting } from '../../src/core/memory/measure-memory.js';
import { throughputPlotSpec } from '../../src/core/memory/memory-plots.js';
import type { MemoryPointResult, MemoryPointSpec, MemoryProbe } from '../../src/core/memory/memory-probe.js';
import { formatMemoryReport, memoryReportDocument, writeMemoryOutputs } from '../../src/core/memory/memory-report.js';
import { throughputPoints, throughputSummary, tokensPerSecond } from '../../src/core/memory/throughput.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const model = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });
const date = new Date('2025-01-02T03:04:05Z');
const K = 1024;
const work = mkdtempSync(join(tmpdir(), 'commvq-mem-tps-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * A GPU-like probe: dense fits 14 sequences at 32K and 3 at 128K, CommVQ 1-bit 208 and 50; one decode step takes
 * `fixed + perSeq·batch` ms (dense 9 + 2.5·B at 32K: 318.2 tokens/s at 14; CommVQ 15 + 1.2·B: 786.1 at 208).
 */
const fake: MemoryProbe = {
  device: 'cuda:0 (fake)',
  measures: true,
  async probe(spec: MemoryPointSpec): Promise<MemoryPointResult> {
    const dense = spec.cache === 'dense';
    const long = spec.context > 32 * K;
    const fits = spec.batch <= (dense ? (long ? 3 : 14) : long ? 50 : 208);
    const breakdown = { weights: 1, cacheArithmetic: 1, cacheAllocated: 1, codebooks: 0, encoders: 0 };
    const base = { spec, breakdown, bytesPerToken: { arithmetic: 8, allocated: 8 }, deviceBytes: 80 };
    if (!fits) return { ...base, fits: false, reason: 'out of memory' };
    const ms = (dense ? 9 : 15) * (long ? 2 : 1) + (dense ? 2.5 : 1.2) * spec.batch;
    return { ...base, fits: true, peakPrefill: 2, peakDecode: 2, driverUsedPrefill: 3, driverUsedDecode: 3, decodeMsPerStep: ms, prefillMs: 100 };
  },
  dispose() {},
};

const caches: CacheSetting[] = [{ cache: 'dense' }, { cache: 'commvq', bits: 1 }];

async function gpuDoc(o: { contexts?: number[]; caches?: CacheSetting[] } = {}) {
  const contexts = o.contexts ?? [32 * K];
  const settings = o.caches ?? caches;
  const targets = gridPoints(settings, contexts, [0]).map(({ batch: _, ...t }) => t);
  const m = await measureMemory(fake, { points: gridPoints(settings, contexts, [1, 16]), maxBatch: { targets, limit: 1024 } });
  return memoryReportDocument(m, { command: 'c', model, decodeTokens: 4, date });
}

describe('decode throughput', () => {
  it('is batch × 1000 / ms per step, and null where no step was timed', () => {
    expect(tokensPerSecond(64, 432)).toBeCloseTo(148.148, 3);
    expect(tokensPerSecond(1, 15.7)).toBeCloseTo(63.69, 2);
    expect(tokensPerSecond(8, null)).toBeNull();
    expect(tokensPerSecond(8, undefined)).toBeNull();
    expect(tokensPerSecond(8, 0)).toBeNull();
  });

  it('is in every timed point of the JSON, at the largest batch and in each trial; null where a point did not fit', async () => {
    const doc = await gpuDoc();
    const dense16 = doc.points.find((p) => p.cache === 'dense' && p.batch === 16)!;
    expect(dense16).toMatchObject({ fits: false, decode_ms_per_step: null, tokens_per_s: null });
    const q16 = doc.points.find((p) => p.cache === 'commvq-1bit' && p.batch === 16)!;
    expect(q16.decode_ms_per_step).toBeCloseTo(15 + 1.2 * 16, 9);
    expect(q16.tokens_per_s).toBeCloseTo((16 * 1000) / (15 + 1.2 * 16), 9);
    const [dense, q] = doc.max_batch;
    expect(dense).toMatchObject({ cache: 'dense', max_batch: 14, decode_ms_per_step: 44 });
    expect(dense!.tokens_per_s).toBeCloseTo(14_000 / 44, 9);
    expect(q).toMatchObject({ cache: 'commvq-1bit', max_batch: 208 });
    expect(q!.tokens_per_s).toBeCloseTo(208_000 / (15 + 1.2 * 208), 9);
    const trial = q!.trials.find((t) => t.batch === 64)!;
    expect(trial.tokens_per_s).toBeCloseTo(64_000 / (15 + 1.2 * 64), 9);
    expect(q!.trials.find((t) => !t.fits)).toMatchObject({ decode_ms_per_step: null, tokens_per_s: null });
  });

  it('summarises the best per cache and context over grid and trials, each batch once, beside dense’s best', async () => {
    const doc = await gpuDoc({ contexts: [32 * K, 128 * K] });
    const timed = throughputPoints(doc.points, doc.max_batch);
    // batch 1 and 16 are grid points that the searches reused: counted once
    expect(timed.filter((p) => p.cache === 'commvq-1bit' && p.context === 32 * K && p.batch === 16)).toHaveLength(1);
    const s = doc.summary.throughput;
    expect(s.map((e) => [e.cache, e.context, e.best_batch])).toEqual([
      ['dense', 32 * K, 14], ['commvq-1bit', 32 * K, 208], ['dense', 128 * K, 3], ['commvq-1bit', 128 * K, 50],
    ]);
    expect(s[0]).toMatchObject({ ratio_to_dense: null, batches: [1, 2, 4, 8, 12, 14] });
    expect(s[1]!.ratio_to_dense).toBeCloseTo((208_000 / (15 + 1.2 * 208)) / (14_000 / 44), 9);
    expect(s[3]!.ratio_to_dense).toBeCloseTo((50_000 / (30 + 1.2 * 50)) / (3_000 / (18 + 7.5)), 9);
    // without dense at a context there is nothing to divide by
    const alone = await gpuDoc({ caches: [{ cache: 'commvq', bits: 1 }] });
    expect(alone.summary.throughput.map((e) => e.ratio_to_dense)).toEqual([null]);
    expect(throughputSummary([], [])).toEqual([]);
  });

  it('prints ms/step and tokens/s per point, tokens/s at the largest batch, and the best beside dense', async () => {
    const text = formatMemoryReport(await gpuDoc()).join('\n');
    expect(text).toMatch(/tokens\/s = batch × 1000 \/ ms\/step/);
    expect(text).toMatch(/^commvq-1bit\s+32K\s+16\s+yes\s.*\s34\.2\s+467\.8\s+8 \/ 8$/m); // 15 + 19.2 ms; 16000 / 34.2
    expect(text).toMatch(/^dense\s+32K\s+14\s+0\.00\s+318\.2\s+1 2 4 8 16✗ 12 14 15✗$/m); // max batch, peak decode, tokens/s, trials
    expect(text).toMatch(/^decode throughput: the best over the batches this run timed/m);
    expect(text).toMatch(/^dense\s+32K\s+318\.2\s+14\s+—\s+6 \(1 to 14\)$/m);
    expect(text).toMatch(/^commvq-1bit\s+32K\s+786\.1\s+208\s+2\.47\s+\d+ \(1 to 208\)$/m);
  });

  it('draws tokens/s against a log₂ batch axis, one line per cache, one panel per context, and --out writes it', async () => {
    const doc = await gpuDoc({ contexts: [32 * K, 128 * K] });
    const spec = throughputPlotSpec(doc) as any;
    expect(spec.facet.column.sort).toEqual(['32K', '128K']);
    expect(spec.spec.mark).toMatchObject({ type: 'line', point: true });
    expect(spec.spec.encoding.x.scale).toMatchObject({ type: 'log', base: 2 });
    expect(spec.spec.encoding.y.field).toBe('tokens_per_s');
    expect(spec.spec.encoding.color.sort).toEqual(['dense', 'commvq-1bit']);
    expect(spec.data.values).toHaveLength(throughputPoints(doc.points, doc.max_batch).length);
    expect(spec.data.values.some((v: { cache: string; batch: number }) => v.cache === 'commvq-1bit' && v.batch === 208)).toBe(true);
    const out = join(work, 'gpu');
    await writeMemoryOutputs(out, doc);
    expect(readdirSync(out).sort()).toEqual(['bytes-per-token.png', 'bytes-per-token.svg', 'memory.json', 'memory.png', 'memory.svg', 'throughput.png', 'throughput.svg']);
  });

  it('is null and absent on the CPU, which times nothing', async () => {
    const m = await measureMemory(new AccountingProbe(model.config, { decodeTokens: 16 }), { points: gridPoints(caches, [32 * K], [1]), maxBatch: { targets: [{ cache: 'commvq', bits: 1, context: 32 * K }], limit: 8 } });
    const doc = memoryReportDocument(m, { command: 'c', model, decodeTokens: 16, date });
    expect(doc.points.every((p) => p.tokens_per_s === null && p.decode_ms_per_step === null)).toBe(true);
    expect(doc.max_batch[0]).toMatchObject({ tokens_per_s: null, decode_ms_per_step: null });
    expect(doc.summary.throughput).toEqual([]);
    expect(throughputPlotSpec(doc)).toBeUndefined();
    expect(formatMemoryReport(doc).join('\n')).not.toMatch(/tokens\/s|decode throughput/);
  });
});
