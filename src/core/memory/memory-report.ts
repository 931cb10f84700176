/**
 * The measure-memory report: one JSON document (format name and version, device, date, command line, every point
 * by owner with its decode time and tokens/s, the max-batch searches, and a summary: the paper's targets and the best
 * throughput per cache and context), and the same as a terminal table.
 *
 *   const doc = memoryReportDocument(measurement, { command: 'commvq measure-memory ...', model, decodeTokens: 16 });
 *   for (const line of formatMemoryReport(doc)) console.log(line);
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { COMMVQ_DEFAULTS } from '../cache-spec.js';
import type { PrefillMode } from '../commvq/commvq-cache.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import type { ModelConfig } from '../model/config.js';
import type { MaxBatchResult } from './max-batch.js';
import type { MemoryCacheKind, MemoryPointResult } from './memory-probe.js';
import { bytesPerTokenPoints, cacheLabel, contextLabel, GiB, parameterCount, prefillModeOf, type MemoryMeasurement } from './measure-memory.js';
import { renderMemoryPlots } from './memory-plots.js';
import { throughputSummary, tokensPerSecond, type ThroughputEntry } from './throughput.js';

export const MEMORY_REPORT_FORMAT = 'commvq.memory-report';
/**
 * 2: points and searches say their CommVQ `prefill`, and `commvq-Nbit` is the faithful one (version 1 ran strict only).
 * 3: `decode_ms_per_token` is named `decode_ms_per_step`, what it always was (one step decodes a token for every
 * sequence of the batch); points, searches and trials give `tokens_per_s`; `summary.throughput`.
 */
export const MEMORY_REPORT_VERSION = 3;

/** One point, every size in bytes; null where the device did not measure it (CPU) or the point did not fit. */
export interface MemoryReportPoint {
  cache: string; // label: dense, commvq-1bit, commvq-2bit, commvq-1bit-strict (cacheLabel)
  mode: MemoryCacheKind;
  bits: number | null;
  /** CommVQ's prompt attention; null for dense */
  prefill: PrefillMode | null;
  context: number;
  batch: number;
  fits: boolean;
  reason: string | null;
  weights: number;
  cache_arithmetic: number;
  cache_allocated: number;
  codebooks: number;
  encoders: number;
  /** weights + cache as allocated + codebooks + encoders */
  resident: number;
  /** transient bytes at the peaks: peak − resident */
  workspace_prefill: number | null;
  workspace_decode: number | null;
  peak_prefill: number | null;
  peak_decode: number | null;
  driver_used_prefill: number | null;
  driver_used_decode: number | null;
  /** whether the driver's used memory covers the allocator's peaks (it must: the allocator lives inside it) */
  driver_covers_peak: boolean | null;
  /** median time of one decode step of the whole batch (a token for every sequence) */
  decode_ms_per_step: number | null;
  /** batch × 1000 / decode_ms_per_step (throughput.ts); null where not timed (CPU) or the point did not fit */
  tokens_per_s: number | null;
  prefill_ms: number | null;
  /** of prefill_ms, GPU milliseconds of key encoding and of value encoding (CommVQ); null where not timed */
  prefill_keys_ms: number | null;
  prefill_values_ms: number | null;
  /** `measured` while the prompt ran, `reserved` for a max-batch trial (the batch-1 workspace allocated beside the cache) */
  prefill_peak: 'measured' | 'reserved' | null;
  device_bytes: number;
  /** per token, per layer, one sequence */
  bytes_per_token: { arithmetic: number; allocated: number };
}

export interface MemoryMaxBatchEntry {
  cache: string;
  bits: number | null;
  prefill: PrefillMode | null;
  context: number;
  max_batch: number;
  capped: boolean;
  peak_decode: number | null;
  /** decode time and throughput at max_batch (null at 0, or on the CPU) */
  decode_ms_per_step: number | null;
  tokens_per_s: number | null;
  /** the device size the trials had to fit (the card's, or --device-memory's) */
  device_bytes: number;
  trials: { batch: number; fits: boolean; peak_decode: number | null; decode_ms_per_step: number | null; tokens_per_s: number | null; reason: string | null }[];
}

export interface MemoryTarget {
  id: string;
  description: string;
  /** what was found (bytes, sequences or a ratio), null when the point did not fit */
  value: number | null;
  threshold: number;
  /** null: not decided here (the CPU measures no peak) */
  pass: boolean | null;
  note: string | null;
}

export interface MemoryReportDocument {
  format: typeof MEMORY_REPORT_FORMAT;
  version: typeof MEMORY_REPORT_VERSION;
  device: string;
  measures: boolean;
  date: string;
  command: string;
  model: { name: string; source: string; parameters: number; layers: number; kv_heads: number; head_dim: number; max_position_embeddings: number };
  decode_tokens: number;
  note: string | null;
  points: MemoryReportPoint[];
  max_batch: MemoryMaxBatchEntry[];
  summary: {
    targets: MemoryTarget[];
    /** per context and cache, the best tokens/s over the batches this run timed, and its ratio to dense's */
    throughput: ThroughputEntry[];
  };
}

export const CPU_NOTE = 'byte accounting only: peaks, workspace and decode time are measured on a GPU (--device cuda); fits = resident bytes within the assumed device size';

/** The targets of the paper this report checks when their points are present (spec §7.5), as they read for the default prefill mode. */
export const TARGETS = {
  peak128k: { id: 'commvq-1bit-128k-batch1-peak', threshold: 17.5 * GiB, description: 'CommVQ 1-bit, 128K context, batch 1: peak (prefill and decode) ≤ 17.5 GiB' },
  maxBatch32k: { id: 'commvq-1bit-32k-max-batch', threshold: 128, description: 'CommVQ 1-bit, 32K context: max batch ≥ 128' },
  oneBit: { id: 'commvq-1bit-bytes-per-token', threshold: 0.0645, description: 'CommVQ 1-bit cache per token ≤ 6.45% of dense (−93.55%)' },
  twoBit: { id: 'commvq-2bit-bytes-per-token', threshold: 0.125, description: 'CommVQ 2-bit cache per token ≤ 12.5% of dense (−87.5%)' },
} as const;

export function memoryReportDocument(
  m: MemoryMeasurement,
  o: { command: string; model: { name: string; source: string; config: ModelConfig }; decodeTokens: number; date?: Date },
): MemoryReportDocument {
  const c = o.model.config;
  const points = m.points.map(reportPoint);
  const maxBatch = m.maxBatch.map(reportMaxBatch);
  return {
    format: MEMORY_REPORT_FORMAT,
    version: MEMORY_REPORT_VERSION,
    device: m.device,
    measures: m.measures,
    date: (o.date ?? new Date()).toISOString(),
    command: o.command,
    model: { name: o.model.name, source: o.model.source, parameters: parameterCount(c), layers: c.numLayers, kv_heads: c.numKvHeads, head_dim: c.headDim, max_position_embeddings: c.maxPositionEmbeddings },
    decode_tokens: o.decodeTokens,
    note: m.measures ? null : CPU_NOTE,
    points,
    max_batch: maxBatch,
    summary: { targets: memoryTargets(points, maxBatch, m.measures), throughput: throughputSummary(points, maxBatch) },
  };
}

export function reportPoint(r: MemoryPointResult): MemoryReportPoint {
  const b = r.breakdown;
  const resident = b.weights + b.cacheAllocated + b.codebooks + b.encoders;
  const or = (v: number | undefined) => (v === undefined ? null : v);
  const covers = r.peakDecode !== undefined && r.driverUsedDecode !== undefined ? r.driverUsedDecode >= r.peakDecode && (r.driverUsedPrefill ?? Infinity) >= (r.peakPrefill ?? 0) : null;
  return {
    cache: cacheLabel(r.spec), mode: r.spec.cache, bits: r.spec.bits ?? null, prefill: prefillModeOf(r.spec), context: r.spec.context, batch: r.spec.batch, fits: r.fits, reason: r.reason ?? null,
    weights: b.weights, cache_arithmetic: b.cacheArithmetic, cache_allocated: b.cacheAllocated, codebooks: b.codebooks, encoders: b.encoders, resident,
    workspace_prefill: r.peakPrefill === undefined ? null : r.peakPrefill - resident,
    workspace_decode: r.peakDecode === undefined ? null : r.peakDecode - resident,
    peak_prefill: or(r.peakPrefill), peak_decode: or(r.peakDecode), driver_used_prefill: or(r.driverUsedPrefill), driver_used_decode: or(r.driverUsedDecode), driver_covers_peak: covers,
    decode_ms_per_step: or(r.decodeMsPerStep), tokens_per_s: tokensPerSecond(r.spec.batch, r.decodeMsPerStep), prefill_ms: or(r.prefillMs),
    prefill_keys_ms: or(r.prefillPhases?.keys), prefill_values_ms: or(r.prefillPhases?.values), prefill_peak: r.prefillPeak ?? null, device_bytes: r.deviceBytes,
    bytes_per_token: { ...r.bytesPerToken },
  };
}

function reportMaxBatch(r: MaxBatchResult): MemoryMaxBatchEntry {
  return {
    cache: cacheLabel(r), bits: r.bits ?? null, prefill: prefillModeOf(r), context: r.context, max_batch: r.maxBatch, capped: r.capped, peak_decode: r.best?.peakDecode ?? null,
    decode_ms_per_step: r.best?.decodeMsPerStep ?? null, tokens_per_s: tokensPerSecond(r.maxBatch, r.best?.decodeMsPerStep),
    device_bytes: r.trials[0]?.deviceBytes ?? 0,
    trials: r.trials.map((t) => ({
      batch: t.spec.batch, fits: t.fits, peak_decode: t.peakDecode ?? null, decode_ms_per_step: t.decodeMsPerStep ?? null, tokens_per_s: tokensPerSecond(t.spec.batch, t.decodeMsPerStep), reason: t.reason ?? null,
    })),
  };
}

/** The paper's targets for each CommVQ prefill mode the report holds, each checked only when the report holds its points. */
export function memoryTargets(points: readonly MemoryReportPoint[], maxBatch: readonly MemoryMaxBatchEntry[], measures: boolean): MemoryTarget[] {
  const modes = new Set([...points, ...maxBatch].flatMap((p) => (p.prefill === null ? [] : [p.prefill])));
  return [...modes].flatMap((mode) => modeTargets(points, maxBatch, measures, mode));
}

function modeTargets(points: readonly MemoryReportPoint[], maxBatch: readonly MemoryMaxBatchEntry[], measures: boolean, mode: PrefillMode): MemoryTarget[] {
  const out: MemoryTarget[] = [];
  const label = (bits: 1 | 2) => cacheLabel({ cache: 'commvq', bits, prefillMode: mode });
  const p128 = points.find((p) => p.cache === label(1) && p.context === 128 * 1024 && p.batch === 1);
  if (p128) {
    const t = inMode(TARGETS.peak128k, mode);
    if (!p128.fits) out.push({ ...t, value: null, pass: false, note: p128.reason });
    else if (!measures) out.push({ ...t, value: p128.resident, pass: null, note: 'resident bytes by arithmetic; the peak is measured on a GPU' });
    else {
      // the issue's target covers both phases: the larger of the prefill and decode peaks
      const peak = p128.peak_decode === null ? null : Math.max(p128.peak_decode, p128.peak_prefill ?? 0);
      out.push({ ...t, value: peak, pass: peak !== null && peak <= t.threshold, note: 'max of the prefill and decode peaks' });
    }
  }
  const mb = maxBatch.find((e) => e.cache === label(1) && e.context === 32 * 1024);
  if (mb) {
    const t = inMode(TARGETS.maxBatch32k, mode);
    const on = `on ${gib(mb.device_bytes)} GiB`;
    out.push({ ...t, value: mb.max_batch, pass: measures ? mb.max_batch >= t.threshold : null, note: measures ? on : `${on}: an upper bound by arithmetic, activations not counted; measured on a GPU` });
  }
  const shown = bytesPerTokenPoints(points);
  const dense = shown.get('dense');
  for (const [bits, target] of [[1, TARGETS.oneBit], [2, TARGETS.twoBit]] as const) {
    const q = shown.get(label(bits));
    const t = inMode(target, mode);
    if (!dense || !q) continue;
    // compressed tokens by the packed layout; what the buffers hold per token besides (the exact window, the
    // rotation table, rounding to 64 rows) shrinks with the context and is shown apart
    const ratio = q.bytes_per_token.arithmetic / dense.bytes_per_token.arithmetic;
    const overhead = measures ? `; as allocated at ${q.context} tokens: ${(q.bytes_per_token.allocated / dense.bytes_per_token.allocated * 100).toFixed(2)}%` : '';
    out.push({ ...t, value: ratio, pass: ratio <= t.threshold, note: `packed arithmetic${overhead}` });
  }
  return out;
}

type TargetText = Pick<MemoryTarget, 'id' | 'description' | 'threshold'>;

/** A target as it reads for a prefill mode: the default's as TARGETS has it, another's named (`commvq-1bit-strict-…`, `CommVQ 1-bit (strict prefill)…`). */
function inMode(t: TargetText, mode: PrefillMode): TargetText {
  if (mode === COMMVQ_DEFAULTS.prefill) return t;
  return { ...t, id: t.id.replace(/^commvq-\dbit/, (label) => `${label}-${mode}`), description: t.description.replace(/^CommVQ \d-bit/, (name) => `${name} (${mode} prefill)`) };
}

/**
 * Writes DIR/memory.json, DIR/memory.svg/.png, DIR/bytes-per-token.svg/.png and (where decode was timed)
 * DIR/throughput.svg/.png, each atomically; returns the paths.
 *
 *   const files = await writeMemoryOutputs('out/mem', doc);   // ['out/mem/memory.json', ...]
 */
export async function writeMemoryOutputs(dir: string, doc: MemoryReportDocument): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: [string, string | Uint8Array][] = [['memory.json', JSON.stringify(doc, null, 1) + '\n']];
  const plots = await renderMemoryPlots(doc);
  if (plots.memory) files.push(['memory.svg', plots.memory.svg], ['memory.png', plots.memory.png]);
  if (plots.bytesPerToken) files.push(['bytes-per-token.svg', plots.bytesPerToken.svg], ['bytes-per-token.png', plots.bytesPerToken.png]);
  if (plots.throughput) files.push(['throughput.svg', plots.throughput.svg], ['throughput.png', plots.throughput.png]);
  for (const [name, data] of files) writeFileAtomic(join(dir, name), [typeof data === 'string' ? Buffer.from(data) : data]);
  return files.map(([name]) => join(dir, name));
}

// ---- the terminal table ------------------------------------------------------------------------------------------

const gib = (v: number | null) => (v === null ? '—' : (v / GiB).toFixed(2));
const fixed = (v: number | null) => (v === null ? '—' : v.toFixed(1));

/** `12.3 (1.1, 2.0)`: the prefill's seconds, with its key and value encoding where they were timed. */
function prefillSplit(p: MemoryReportPoint): string {
  if (p.prefill_ms === null) return '—';
  const s = (ms: number) => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
  return p.prefill_keys_ms === null || p.prefill_values_ms === null ? s(p.prefill_ms) : `${s(p.prefill_ms)} (${s(p.prefill_keys_ms)}, ${s(p.prefill_values_ms)})`;
}

/** The report as lines for the terminal: the points by owner (GiB), the max-batch searches, the targets. */
export function formatMemoryReport(doc: MemoryReportDocument): string[] {
  const lines = [
    `measure-memory on ${doc.device}: ${doc.model.name} (${(doc.model.parameters / 1e9).toFixed(2)} B parameters), ${doc.decode_tokens} decoded tokens per point`,
    ...(doc.note ? [`note: ${doc.note}`] : []),
  ];
  if (doc.points.length > 0) {
    const times = doc.measures ? '; ms/step = one decode step of the whole batch, tokens/s = batch × 1000 / ms/step' : '';
    lines.push('', `sizes in GiB; cache = packed arithmetic / as allocated; B/tok = bytes per token and layer${doc.measures ? ' (packed / as allocated)' : ''}${times}`);
    // the CPU measures no peak, workspace or time: those columns are left out rather than filled with dashes
    const measured = doc.measures ? ['workspace', 'peak prefill', 'peak decode', 'driver used', 'prefill s (keys, values)', 'ms/step', 'tokens/s'] : [];
    const header = ['cache', 'context', 'batch', 'fits', 'weights', 'cache', 'codebooks', 'encoders', ...measured, 'B/tok'];
    const rows = doc.points.map((p) => [
      p.cache, contextLabel(p.context), String(p.batch), p.fits ? 'yes' : 'no', gib(p.weights),
      doc.measures ? `${gib(p.cache_arithmetic)} / ${gib(p.cache_allocated)}` : gib(p.cache_arithmetic),
      gib(p.codebooks), gib(p.encoders),
      ...(doc.measures ? [gib(p.workspace_decode), gib(p.peak_prefill), gib(p.peak_decode), gib(p.driver_used_decode), prefillSplit(p), fixed(p.decode_ms_per_step), fixed(p.tokens_per_s)] : []),
      doc.measures && p.fits ? `${p.bytes_per_token.arithmetic} / ${Math.round(p.bytes_per_token.allocated)}` : String(p.bytes_per_token.arithmetic),
    ]);
    lines.push(...table(header, rows));
    for (const p of doc.points) if (!p.fits && p.reason) lines.push(`  ${p.cache} ${contextLabel(p.context)} × ${p.batch}: ${p.reason}`);
    for (const p of doc.points) if (p.driver_covers_peak === false) lines.push(`  ${p.cache} ${contextLabel(p.context)} × ${p.batch}: the driver reports less in use than the allocator's peak — check the measurement`);
  }
  if (doc.max_batch.length > 0) {
    lines.push('', 'largest batch that fits');
    const rows = doc.max_batch.map((e) => [
      e.cache, contextLabel(e.context), `${e.max_batch}${e.capped ? '+' : ''}`, ...(doc.measures ? [gib(e.peak_decode), fixed(e.tokens_per_s)] : []), e.trials.map((t) => `${t.batch}${t.fits ? '' : '✗'}`).join(' '),
    ]);
    lines.push(...table(['cache', 'context', 'max batch', ...(doc.measures ? ['peak decode', 'tokens/s'] : []), 'trials (✗ = did not fit)'], rows));
    if (doc.max_batch.some((e) => e.capped)) lines.push('  + : the search limit fit (raise --max-batch-limit)');
  }
  lines.push(...throughputLines(doc.summary.throughput));
  if (doc.summary.targets.length > 0) {
    lines.push('', 'targets');
    for (const t of doc.summary.targets) {
      const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'FAIL';
      lines.push(`  ${verdict} ${t.description}: ${targetValue(t)}${t.note ? ` (${t.note})` : ''}`);
    }
  }
  return lines;
}

/** The best throughput per context and cache, with its ratio to dense's; nothing where no decode was timed (CPU). */
function throughputLines(entries: readonly ThroughputEntry[]): string[] {
  if (entries.length === 0) return [];
  const rows = entries.map((e) => [
    e.cache, contextLabel(e.context), fixed(e.best_tokens_per_s), String(e.best_batch),
    e.ratio_to_dense === null ? '—' : e.ratio_to_dense.toFixed(2),
    e.batches.length === 1 ? `1 (${e.batches[0]})` : `${e.batches.length} (${e.batches[0]} to ${e.batches[e.batches.length - 1]})`,
  ]);
  return ['', 'decode throughput: the best over the batches this run timed (grid and max-batch trials)', ...table(['cache', 'context', 'best tokens/s', 'at batch', '× dense', 'batches timed'], rows)];
}

function targetValue(t: MemoryTarget): string {
  if (t.value === null) return 'did not fit';
  if (t.id.endsWith('peak')) return `${gib(t.value)} GiB`;
  if (t.id.endsWith('bytes-per-token')) return `${(100 * t.value).toFixed(2)}%`;
  return String(t.value);
}

/** Columns padded to their widest cell; text left, numbers right. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^[\d.—+ /]+$/.test(r[i]!)));
  const fmt = (cells: string[]) => cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
}
