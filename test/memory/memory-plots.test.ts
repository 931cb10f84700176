/**
 * The measure-memory plots: Vega-Lite specs (log₂ context axis, one panel per cache, the y unit from the data), SVG
 * and PNG, and --out's files.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AccountingProbe, gridPoints, measureMemory, readMemoryModelConfig } from '../../src/core/memory/measure-memory.js';
import { bytesPerTokenPlotSpec, memoryPlotSpec, renderMemoryPlots } from '../../src/core/memory/memory-plots.js';
import { memoryReportDocument, writeMemoryOutputs } from '../../src/core/memory/memory-report.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const model = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });
const work = mkdtempSync(join(tmpdir(), 'commvq-mem-plots-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function doc() {
  const caches = [{ cache: 'dense' as const }, { cache: 'commvq' as const, bits: 1 as const }, { cache: 'commvq' as const, bits: 2 as const }];
  const points = gridPoints(caches, [8192, 32768, 131072], [1, 8]);
  const m = await measureMemory(new AccountingProbe(model.config, { decodeTokens: 16 }), { points });
  return memoryReportDocument(m, { command: 'test', model, decodeTokens: 16 });
}

describe('measure-memory plots', () => {
  it('draws memory against a log₂ context axis, stacked by owner, one panel per cache, at the smallest batch', async () => {
    const spec = memoryPlotSpec(await doc()) as any;
    expect(spec.facet.column.sort).toEqual(['dense', 'commvq-1bit', 'commvq-2bit']);
    const bars = spec.spec.layer[0];
    expect(bars.encoding.x.scale).toMatchObject({ type: 'log', base: 2 });
    expect(bars.encoding.x.axis.values).toEqual([8192, 32768, 131072]);
    expect(bars.encoding.y.stack).toBe('zero');
    expect(spec.title.text).toMatch(/memory by owner at batch 1 \(arithmetic, CPU\)/);
    expect(bars.encoding.y.title).toBe('GiB');
    expect(spec.spec.layer.at(-1).mark.type).toBe('rule'); // 80 GiB against ~31 GiB of the longest context: on the scale
    const values = spec.data.values as { cache: string; context: number; owner: string; amount: number }[];
    expect(values).toHaveLength(3 * 3 * 4); // caches × contexts × owners (no workspace on the CPU), batch 1 only
    expect(values.find((v) => v.cache === 'dense' && v.context === 131072 && v.owner === 'cache')!.amount).toBeCloseTo(16.002, 3);
  });

  it('a small model is drawn in the unit its bytes fill, with the far larger device named in the subtitle, not drawn', async () => {
    const d = await doc();
    const small = (n: number) => n / 2 ** 20; // the demo model's scale: a GiB becomes a KiB
    const points = d.points.map((p) => ({ ...p, weights: small(p.weights), cache_allocated: small(p.cache_allocated), codebooks: small(p.codebooks), encoders: small(p.encoders) }));
    const spec = memoryPlotSpec({ ...d, points }) as any;
    expect(spec.spec.layer[0].encoding.y.title).toBe('KiB');
    expect(spec.spec.layer.map((l: { mark: { type: string } }) => l.mark.type)).toEqual(['bar', 'line']);
    expect(spec.title.subtitle).toMatch(/device memory 80\.00 GiB, off the scale \(assumed\)/);
    const dense = spec.data.values.find((v: { cache: string; context: number; owner: string }) => v.cache === 'dense' && v.context === 131072 && v.owner === 'cache');
    expect(dense.amount).toBeCloseTo(16.002, 3);
  });

  it('draws bytes per token per cache', async () => {
    const spec = bytesPerTokenPlotSpec(await doc()) as any;
    expect(spec.data.values).toEqual([
      { cache: 'dense', kind: 'arithmetic', bytes: 4096 },
      { cache: 'commvq-1bit', kind: 'arithmetic', bytes: 264 },
      { cache: 'commvq-2bit', kind: 'arithmetic', bytes: 512 },
    ]);
  });

  it('takes the allocated bytes per token at each cache’s longest context that fit', async () => {
    const d = await doc();
    // a measured report whose fixed overhead (1e6 bytes per sequence and layer) shrinks per token with the context
    const points = d.points.map((p) => ({
      ...p,
      fits: p.fits && !(p.cache === 'dense' && p.context === 131072),
      bytes_per_token: { arithmetic: p.bytes_per_token.arithmetic, allocated: p.bytes_per_token.arithmetic + 1e6 / p.context },
    }));
    const spec = bytesPerTokenPlotSpec({ ...d, measures: true, points }) as any;
    const allocated = Object.fromEntries(spec.data.values.filter((v: { kind: string }) => v.kind === 'allocated').map((v: { cache: string; bytes: number }) => [v.cache, v.bytes]));
    expect(allocated).toEqual({ dense: 4096 + 1e6 / 32768, 'commvq-1bit': 264 + 1e6 / 131072, 'commvq-2bit': 512 + 1e6 / 131072 });
    expect(spec.title.subtitle).toBe('allocated: at 32K, 128K tokens');
  });

  it('renders both as SVG and PNG, and --out writes the five files', async () => {
    const d = await doc();
    const { memory, bytesPerToken } = await renderMemoryPlots(d);
    expect(memory!.svg).toMatch(/^<svg[^>]*>/);
    expect(memory!.svg).toContain('commvq-2bit');
    expect(memory!.svg).toContain('128K');
    expect(bytesPerToken!.svg).toContain('4,096');
    expect(Buffer.from(memory!.png.subarray(1, 4)).toString()).toBe('PNG');
    const files = await writeMemoryOutputs(join(work, 'out'), d);
    expect(readdirSync(join(work, 'out')).sort()).toEqual(['bytes-per-token.png', 'bytes-per-token.svg', 'memory.json', 'memory.png', 'memory.svg']);
    expect(files).toHaveLength(5);
    expect(JSON.parse(readFileSync(join(work, 'out', 'memory.json'), 'utf8'))).toEqual(d);
  });

  it('draws each prefill mode of a width as its own cache', async () => {
    const caches = [{ cache: 'commvq' as const, bits: 1 as const, prefillMode: 'faithful' as const }, { cache: 'commvq' as const, bits: 1 as const, prefillMode: 'strict' as const }];
    const m = await measureMemory(new AccountingProbe(model.config, { decodeTokens: 16 }), { points: gridPoints(caches, [8192], [1]) });
    const d = memoryReportDocument(m, { command: 'test', model, decodeTokens: 16 });
    expect((memoryPlotSpec(d) as any).facet.column.sort).toEqual(['commvq-1bit', 'commvq-1bit-strict']);
    expect((bytesPerTokenPlotSpec(d) as any).encoding.x.sort).toEqual(['commvq-1bit', 'commvq-1bit-strict']);
  });

  it('draws nothing for a report without points', async () => {
    const empty = { ...(await doc()), points: [] };
    expect(memoryPlotSpec(empty)).toBeUndefined();
    expect(await renderMemoryPlots(empty)).toEqual({});
  });
});
