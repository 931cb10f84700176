import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { CommvqError } from '../errors.js';
import { readArrowTable } from '../io/arrow-read.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { batchValues, decodeF16, KvFile } from './kv-reader.js';
import type { KvKind } from './kv-format.js';
import { requireCollectedRun } from './run-manifest.js';

/**
 * make-scale (spec §2): for every collected layer and kind, the mean of |x| over tokens, per channel (HF layout).
 * Streamed one window at a time into f64 sums. A window holding any NaN, or only zeros, is skipped and counted, as
 * the reference skips such files. Output: RUN_DIR/scale.arrow, one row per (kind, layer).
 */
export const SCALE_FORMAT = 'commvq.scale';
export const SCALE_FORMAT_VERSION = 1;
export const SCALE_FILE = 'scale.arrow';

export interface LayerScale {
  kind: KvKind;
  layer: number;
  tokens: number;
  skippedNaN: number;
  skippedZero: number;
  /** mean |x| per channel, [H_kv·D_h] */
  scale: Float32Array;
}

export interface MakeScaleResult {
  path: string;
  layers: LayerScale[];
}

/** Σ|x| per channel over the windows of one file; NaN and all-zero windows skipped. */
export function channelMeanAbs(file: KvFile, onWindow?: () => void): Omit<LayerScale, 'kind' | 'layer'> {
  const width = file.width;
  const sums = new Float64Array(width);
  let tokens = 0;
  let skippedNaN = 0;
  let skippedZero = 0;
  let values = new Float32Array(0);
  for (const batch of file.batches()) {
    const bits = batchValues(batch);
    if (values.length !== bits.length) values = new Float32Array(bits.length);
    decodeF16(bits, values);
    let nan = false;
    let nonZero = false;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v !== v) {
        nan = true;
        break;
      }
      if (v !== 0) nonZero = true;
    }
    onWindow?.();
    if (nan) {
      skippedNaN++;
      continue;
    }
    if (!nonZero) {
      skippedZero++;
      continue;
    }
    for (let i = 0; i < values.length; i++) sums[i % width] += Math.abs(values[i]!);
    tokens += batch.numRows;
  }
  return { tokens, skippedNaN, skippedZero, scale: Float32Array.from(sums, (s) => (tokens > 0 ? s / tokens : 0)) };
}

/**
 *   const { layers } = makeScale('runs/llama', { onProgress: (done, total) => ... });
 */
export function makeScale(runDir: string, options: { onProgress?: (done: number, total: number) => void } = {}): MakeScaleResult {
  const manifest = requireCollectedRun(runDir);
  const { layers: layerList, windowsDone } = manifest.collect;
  const total = layerList.length * 2 * windowsDone;
  let done = 0;
  const layers: LayerScale[] = [];
  for (const kind of ['key', 'value'] as const) {
    for (const layer of layerList) {
      const stats = channelMeanAbs(KvFile.open(runDir, kind, layer), () => options.onProgress?.(++done, total));
      if (stats.tokens === 0) throw new CommvqError(`${runDir}: every window of ${kind} layer ${layer} holds NaN or only zeros; no scale can be computed`);
      layers.push({ kind, layer, ...stats });
    }
  }
  const path = join(runDir, SCALE_FILE);
  writeFileAtomic(path, [scaleFileBytes(layers, manifest.model.configHash)]);
  return { path, layers };
}

function scaleFileBytes(layers: LayerScale[], configHash: string): Uint8Array {
  const width = layers[0]!.scale.length;
  const scaleType = new FixedSizeList(width, new Field('item', new Float32(), false));
  const schema = new Schema(
    [
      new Field('kind', new Utf8(), false),
      new Field('layer', new Int32(), false),
      new Field('tokens', new Int32(), false),
      new Field('skipped_nan', new Int32(), false),
      new Field('skipped_zero', new Int32(), false),
      new Field('scale', scaleType, false),
    ],
    new Map([
      ['commvq.format', SCALE_FORMAT],
      ['commvq.version', String(SCALE_FORMAT_VERSION)],
      ['commvq.statistic', 'mean over tokens of |x| per channel'],
      ['commvq.layout', 'HF'],
      ['commvq.configHash', configHash],
    ]),
  );
  const n = layers.length;
  const int32 = (f: (l: LayerScale) => number) => makeData({ type: new Int32(), length: n, nullCount: 0, data: Int32Array.from(layers, f) });
  const flat = new Float32Array(n * width);
  layers.forEach((l, i) => flat.set(l.scale, i * width));
  const columns = [
    vectorFromArray(layers.map((l) => l.kind), new Utf8()).data[0]!,
    int32((l) => l.layer),
    int32((l) => l.tokens),
    int32((l) => l.skippedNaN),
    int32((l) => l.skippedZero),
    makeData({ type: scaleType, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: flat.length, nullCount: 0, data: flat }) }),
  ];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: columns }));
  return tableToIPC(new Table([batch]), 'file');
}

/**
 * make-scale's per-layer statistic of one kind, from RUN_DIR/scale.arrow.
 *
 *   const valueScales = readScales('runs/llama', 'value');   // Map layer → Float32Array [H_kv·D_h]
 */
export function readScales(runDir: string, kind: KvKind): Map<number, Float32Array> {
  const path = join(runDir, SCALE_FILE);
  if (!existsSync(path)) throw new CommvqError(`${runDir}: no ${SCALE_FILE}`, 'run commvq make-scale first');
  const table = readArrowTable(path, 'rerun commvq make-scale');
  if (table.schema.metadata.get('commvq.format') !== SCALE_FORMAT) throw new CommvqError(`${path}: not a commvq scale file`);
  const width = (table.schema.fields.find((f) => f.name === 'scale')!.type as FixedSizeList).listSize;
  const values = table.getChild('scale')!.data[0]!.children[0]!.values as Float32Array;
  const out = new Map<number, Float32Array>();
  for (let r = 0; r < table.numRows; r++) {
    if (table.getChild('kind')!.get(r) === kind) out.set(table.getChild('layer')!.get(r) as number, values.slice(r * width, (r + 1) * width));
  }
  return out;
}
