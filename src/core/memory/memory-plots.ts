/**
 * The measure-memory plots as Vega-Lite specs, drawn headless to SVG and PNG (plot/heatmap-render.ts):
 *   memory          one panel per cache (dense, CommVQ 1-bit, 2-bit): resident bytes stacked by owner against the
 *                   context on a log₂ axis, at the grid's smallest batch, in the unit the data fills; the measured
 *                   decode peak as a line and the device's size as a dashed rule (in the subtitle when far above)
 *   bytes-per-token bytes per token and layer of each cache (packed arithmetic, and as allocated when measured)
 *   throughput      decode tokens/s against the batch on a log₂ axis, one line per cache, one panel per context,
 *                   over every timed point (grid and max-batch trials); only where decode was timed (GPU)
 *
 *   const { memory, bytesPerToken, throughput } = await renderMemoryPlots(doc);   // { svg, png } each
 */
import { renderVegaLite, type RenderedPlot } from '../plot/heatmap-render.js';
import { byteUnit, formatBytes } from './byte-unit.js';
import { bytesPerTokenPoints, contextLabel } from './measure-memory.js';
import type { MemoryReportDocument } from './memory-report.js';
import { throughputPoints } from './throughput.js';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const OWNERS = ['weights', 'cache', 'codebooks', 'encoders', 'workspace'] as const;
const OWNER_COLORS = ['#4c78a8', '#f58518', '#54a24b', '#b279a2', '#bab0ac'];
const CONTEXT_LABEL = "datum.value >= 1048576 ? (datum.value / 1048576) + 'M' : datum.value >= 1024 ? (datum.value / 1024) + 'K' : datum.value";

/** Memory against context, stacked by owner, one panel per cache; undefined when the report has no points. */
export function memoryPlotSpec(doc: MemoryReportDocument): Record<string, unknown> | undefined {
  if (doc.points.length === 0) return undefined;
  const batch = Math.min(...doc.points.map((p) => p.batch));
  const points = doc.points.filter((p) => p.batch === batch);
  const caches = [...new Set(points.map((p) => p.cache))];
  const contexts = [...new Set(points.map((p) => p.context))].sort((a, b) => a - b);
  const shown = doc.measures ? OWNERS : OWNERS.filter((o) => o !== 'workspace'); // the CPU measures no workspace
  const owned = points.map((p) => {
    const owners: Record<(typeof OWNERS)[number], number> = {
      weights: p.weights, cache: p.cache_allocated, codebooks: p.codebooks, encoders: p.encoders, workspace: Math.max(0, p.workspace_decode ?? 0),
    };
    return { p, bytes: shown.map((o) => owners[o]) };
  });
  // the axis unit and range follow the data, not the device: a demo model's KiB vanish on an 80 GiB axis, so the
  // device's rule is drawn only when it is within 10× of the tallest bar, and named in the subtitle otherwise
  const tallest = Math.max(...owned.map(({ p, bytes }) => Math.max(bytes.reduce((a, b) => a + b, 0), p.peak_decode ?? 0)));
  const device = Math.max(...points.map((p) => p.device_bytes));
  const unit = byteUnit(tallest);
  const showDevice = device <= 10 * tallest;
  const values = owned.flatMap(({ p, bytes }) => shown.map((owner, order) => ({
    cache: p.cache, context: p.context, owner, order, amount: bytes[order]! / unit.bytes,
    peak: p.peak_decode === null ? null : p.peak_decode / unit.bytes, device: p.device_bytes / unit.bytes, fits: p.fits,
  })));
  const x = {
    field: 'context', type: 'quantitative', title: 'context (tokens, log scale)',
    scale: { type: 'log', base: 2, domain: [contexts[0]! / 1.6, contexts[contexts.length - 1]! * 1.6] },
    axis: { values: contexts, labelExpr: CONTEXT_LABEL, grid: false },
  };
  const peakRows = { filter: "datum.owner === 'weights' && datum.peak !== null" }; // one row per point
  return {
    $schema: SCHEMA,
    title: {
      text: `${doc.model.name}: memory by owner at batch ${batch} (${doc.measures ? doc.device : 'arithmetic, CPU'})`,
      subtitle: `${doc.measures ? 'line: decode peak; ' : ''}${showDevice ? 'dashed: device memory' : `device memory ${formatBytes(device)}, off the scale`}${doc.measures ? '' : ' (assumed)'}; faint: did not fit`,
    },
    background: 'white',
    data: { values },
    facet: { column: { field: 'cache', type: 'nominal', title: null, sort: caches } },
    spec: {
      width: 240,
      height: 320,
      layer: [
        {
          mark: { type: 'bar', size: 22 },
          encoding: {
            x,
            y: { field: 'amount', type: 'quantitative', stack: 'zero', title: unit.name },
            color: { field: 'owner', type: 'nominal', title: 'owner', scale: { domain: [...shown], range: OWNER_COLORS.slice(0, shown.length) } },
            order: { field: 'order', type: 'quantitative' },
            opacity: { condition: { test: 'datum.fits', value: 1 }, value: 0.35 }, // faint: the point did not fit
            tooltip: [{ field: 'cache' }, { field: 'context' }, { field: 'owner' }, { field: 'amount', title: unit.name, format: '.2f' }],
          },
        },
        // one filter per layer: vega-lite's optimiser warns on stderr about a filter shared by nested layers
        { transform: [peakRows], mark: { type: 'line', color: 'black', point: { color: 'black' } }, encoding: { x, y: { field: 'peak', type: 'quantitative' } } },
        ...(showDevice ? [{ mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4] }, encoding: { y: { aggregate: 'max', field: 'device', type: 'quantitative' } } }] : []),
      ],
    },
    resolve: { scale: { y: 'shared' } },
  };
}

/**
 * Bytes per token and layer of one sequence, one bar per cache (and per kind when the allocation was measured), at
 * the point bytesPerTokenPoints picks for each cache (its longest context that fit).
 */
export function bytesPerTokenPlotSpec(doc: MemoryReportDocument): Record<string, unknown> | undefined {
  const seen = bytesPerTokenPoints(doc.points);
  if (seen.size === 0) return undefined;
  const kinds = doc.measures ? (['arithmetic', 'allocated'] as const) : (['arithmetic'] as const);
  const values = [...seen.values()].flatMap((p) => kinds.map((kind) => ({ cache: p.cache, kind, bytes: p.bytes_per_token[kind] })));
  const x = { field: 'cache', type: 'nominal', title: null, sort: [...seen.keys()], axis: { labelAngle: 0 } };
  const xOffset = doc.measures ? { xOffset: { field: 'kind', type: 'nominal', sort: [...kinds] } } : {};
  return {
    $schema: SCHEMA,
    title: {
      text: `${doc.model.name}: KV cache bytes per token and layer`,
      ...(doc.measures ? { subtitle: `allocated: at ${[...new Set([...seen.values()].map((p) => contextLabel(p.context)))].join(', ')} tokens` } : {}),
    },
    background: 'white',
    width: 120 * seen.size,
    height: 300,
    data: { values },
    encoding: { x, ...xOffset },
    layer: [
      { mark: { type: 'bar' }, encoding: { y: { field: 'bytes', type: 'quantitative', title: 'bytes per token per layer' }, color: { field: 'kind', type: 'nominal', title: null, scale: { domain: [...kinds] } } } },
      { mark: { type: 'text', dy: -6, fontSize: 12 }, encoding: { y: { field: 'bytes', type: 'quantitative' }, text: { field: 'bytes', type: 'quantitative', format: ',.0f' } } },
    ],
  };
}

/**
 * Decode tokens/s against the batch (log₂ axis), one line per cache, one panel per context, over every point the
 * report timed (throughputPoints: grid points and max-batch trials); undefined when none was timed (the CPU).
 */
export function throughputPlotSpec(doc: MemoryReportDocument): Record<string, unknown> | undefined {
  const values = throughputPoints(doc.points, doc.max_batch).sort((a, b) => a.batch - b.batch);
  if (values.length === 0) return undefined;
  const caches = [...new Set(values.map((v) => v.cache))];
  const contexts = [...new Set(values.map((v) => v.context))].sort((a, b) => a - b);
  const batches = values.map((v) => v.batch);
  const ticks = powersOfTwo(Math.min(...batches), Math.max(...batches));
  return {
    $schema: SCHEMA,
    title: { text: `${doc.model.name}: decode throughput against batch (${doc.device})`, subtitle: 'tokens/s = batch × 1000 / ms per decode step; grid points and max-batch trials' },
    background: 'white',
    data: { values: values.map((v) => ({ ...v, context_label: contextLabel(v.context) })) },
    facet: { column: { field: 'context_label', type: 'nominal', title: 'context', sort: contexts.map(contextLabel) } },
    spec: {
      width: 280,
      height: 260,
      mark: { type: 'line', point: true },
      encoding: {
        x: {
          field: 'batch', type: 'quantitative', title: 'batch (log scale)',
          scale: { type: 'log', base: 2, domain: [Math.min(...batches) / 1.4, Math.max(...batches) * 1.4] }, axis: { values: ticks, grid: false },
        },
        y: { field: 'tokens_per_s', type: 'quantitative', title: 'tokens/s' },
        color: { field: 'cache', type: 'nominal', title: 'cache', sort: caches },
        tooltip: [{ field: 'cache' }, { field: 'context_label', title: 'context' }, { field: 'batch' }, { field: 'tokens_per_s', format: '.1f' }, { field: 'decode_ms_per_step', format: '.2f' }],
      },
    },
    // contexts differ in speed by several times: each panel its own y, so that the caches compare within it
    resolve: { scale: { y: 'independent' } },
  };
}

/** 1, 2, 4, ... spanning [lo, hi]: the batch axis's ticks. */
function powersOfTwo(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let v = 2 ** Math.floor(Math.log2(lo)); v <= hi; v *= 2) out.push(v);
  return out;
}

/** The plots, drawn; a plot with nothing to draw (no points; no timed decode for throughput) is absent. */
export async function renderMemoryPlots(doc: MemoryReportDocument): Promise<{ memory?: RenderedPlot; bytesPerToken?: RenderedPlot; throughput?: RenderedPlot }> {
  const memory = memoryPlotSpec(doc);
  const bytes = bytesPerTokenPlotSpec(doc);
  const throughput = throughputPlotSpec(doc);
  return {
    ...(memory ? { memory: await renderVegaLite(memory) } : {}),
    ...(bytes ? { bytesPerToken: await renderVegaLite(bytes) } : {}),
    ...(throughput ? { throughput: await renderVegaLite(throughput) } : {}),
  };
}
