import { existsSync } from 'node:fs';
import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table, tableToIPC } from 'apache-arrow';
import type { KeyMethod } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import { readArrowTable } from '../io/arrow-read.js';
import { readArrowSchema } from '../io/arrow-schema.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { LayerKeyCodebook, stageThetaSize, type KeyCodebookShape } from './codebook.js';

/**
 * The key-codebook file: one Arrow IPC file per run, RUN_DIR/key-codebook-{em|e2e}-{bits}bit.arrow, one row per
 * (layer, stage, group), sorted:
 *   layer int32, stage int32 (r), group int32 (g = KV head),
 *   theta FixedSizeList<Float32>[2·N_h·P]   θ_{r,g} row-major [2·N_h, P]: θ[2i, j] = X_{i,j}, θ[2i+1, j] = Y_{i,j}
 * Centres are rebuilt from θ on load (never stored). Schema metadata (strings, `commvq.*` keys): format, version,
 * method, bits, residuals, half_size, pairs, head_dim, kv_heads, layout (of the centres: PI), layers, data, model,
 * tokens, heldout, seed.
 */
export const KEY_CODEBOOK_FORMAT = 'commvq.key-codebook';
export const KEY_CODEBOOK_VERSION = 1;

export interface KeyCodebookMeta {
  method: KeyMethod;
  bits: number;
  residuals: number;
  halfSize: number;
  pairs: number;
  headDim: number;
  kvHeads: number;
  /** layout of the centres built from θ: PI (pair-interleaved, spec §0.2) */
  layout: 'PI';
  /** the run folder whose keys trained it */
  data: string;
  model: string;
  /** the training-token budget per layer and the held-out budget (each layer's actual counts are in the report) */
  tokens: number;
  heldout: number;
  seed: number;
}

/**
 * Writes the codebooks of `layers` (layer → θ) atomically. `extra` adds schema metadata (`commvq.<key>`), e.g. the
 * provenance of an imported codebook.
 *
 *   writeKeyCodebook('runs/a/key-codebook-em-1bit.arrow', meta, new Map([[0, layer0]]));
 */
export function writeKeyCodebook(path: string, meta: KeyCodebookMeta, layers: ReadonlyMap<number, LayerKeyCodebook>, extra: Readonly<Record<string, string>> = {}): void {
  const order = [...layers.keys()].sort((a, b) => a - b);
  const size = 2 * meta.halfSize * meta.pairs;
  const n = order.length * meta.residuals * meta.kvHeads;
  const layer = new Int32Array(n);
  const stage = new Int32Array(n);
  const group = new Int32Array(n);
  const theta = new Float32Array(n * size);
  let row = 0;
  for (const l of order) {
    const cb = layers.get(l)!;
    checkShape(cb.shape, meta, `layer ${l}`);
    for (let r = 0; r < meta.residuals; r++) {
      for (let g = 0; g < meta.kvHeads; g++, row++) {
        layer[row] = l;
        stage[row] = r;
        group[row] = g;
        theta.set(cb.stage(r, g), row * size);
      }
    }
  }
  const metadata = new Map<string, string>([
    ['commvq.format', KEY_CODEBOOK_FORMAT],
    ['commvq.version', String(KEY_CODEBOOK_VERSION)],
    ['commvq.layers', order.join(',')],
    ...Object.entries(meta).map(([k, v]) => [`commvq.${snake(k)}`, String(v)] as [string, string]),
    ...Object.entries(extra).map(([k, v]) => [`commvq.${k}`, v] as [string, string]),
  ]);
  const thetaType = new FixedSizeList(size, new Field('item', new Float32(), false));
  const schema = new Schema(
    [new Field('layer', new Int32(), false), new Field('stage', new Int32(), false), new Field('group', new Int32(), false), new Field('theta', thetaType, false)],
    metadata,
  );
  const int32 = (data: Int32Array) => makeData({ type: new Int32(), length: n, nullCount: 0, data });
  const columns = [
    int32(layer),
    int32(stage),
    int32(group),
    makeData({ type: thetaType, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: theta.length, nullCount: 0, data: theta }) }),
  ];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: columns }));
  writeFileAtomic(path, [tableToIPC(new Table([batch]), 'file')]);
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function checkShape(s: KeyCodebookShape, meta: KeyCodebookMeta, what: string): void {
  if (s.residuals !== meta.residuals || s.groups !== meta.kvHeads || s.halfSize !== meta.halfSize || s.pairs !== meta.pairs) {
    throw new Error(`${what}: codebook shape [${s.residuals}, ${s.groups}, ${2 * s.halfSize}, ${s.pairs}] does not match the file's metadata`);
  }
}

export interface KeyCodebookFile {
  readonly path: string;
  readonly meta: KeyCodebookMeta;
  readonly layers: ReadonlyMap<number, LayerKeyCodebook>;
}

/**
 * Reads a key-codebook file written by `commvq train-key`; refuses other files and other format versions.
 *
 *   const { meta, layers } = readKeyCodebook('runs/a/key-codebook-em-1bit.arrow');
 *   const cb = layers.get(0)!;   // LayerKeyCodebook, θ [R, G, 2·N_h, P]
 */
export function readKeyCodebook(path: string): KeyCodebookFile {
  if (!existsSync(path)) throw new CommvqError(`${path}: key codebook not found`, 'train one with commvq train-key RUN_DIR');
  const table = readArrowTable(path, 'train it again with commvq train-key');
  const meta = metaFromSchema(path, table.schema.metadata);
  const shape: KeyCodebookShape = { residuals: meta.residuals, groups: meta.kvHeads, halfSize: meta.halfSize, pairs: meta.pairs };
  const size = stageThetaSize(shape);
  const col = (name: string) => {
    const c = table.getChild(name);
    if (!c) throw new CommvqError(`${path}: column ${name} is missing`);
    return c;
  };
  const layerCol = col('layer').toArray() as Int32Array;
  const stageCol = col('stage').toArray() as Int32Array;
  const groupCol = col('group').toArray() as Int32Array;
  const thetaCol = col('theta');
  if ((thetaCol.type as FixedSizeList).listSize !== size) throw new CommvqError(`${path}: theta rows hold ${(thetaCol.type as FixedSizeList).listSize} values, the metadata says ${size}`);
  const thetaValues = new Float32Array(table.numRows * size);
  let at = 0;
  for (const chunk of thetaCol.data) {
    const child = chunk.children[0]!;
    const values = (child.values as Float32Array).subarray(child.offset, child.offset + chunk.length * size);
    thetaValues.set(values, at);
    at += values.length;
  }
  const layers = new Map<number, LayerKeyCodebook>();
  const seen = new Map<number, number>();
  for (let row = 0; row < table.numRows; row++) {
    const l = layerCol[row]!, r = stageCol[row]!, g = groupCol[row]!;
    if (r < 0 || r >= meta.residuals || g < 0 || g >= meta.kvHeads) throw new CommvqError(`${path}: row ${row} names stage ${r}, group ${g}, outside [${meta.residuals}, ${meta.kvHeads}]`);
    let cb = layers.get(l);
    if (!cb) layers.set(l, (cb = new LayerKeyCodebook(shape)));
    cb.stage(r, g).set(thetaValues.subarray(row * size, row * size + size));
    seen.set(l, (seen.get(l) ?? 0) + 1);
  }
  for (const [l, count] of seen) {
    if (count !== meta.residuals * meta.kvHeads) throw new CommvqError(`${path}: layer ${l} has ${count} of its ${meta.residuals * meta.kvHeads} (stage, group) rows`);
  }
  return { path, meta, layers };
}

/** A key-codebook file's metadata, from its footer alone (θ is not read). */
export async function readKeyCodebookMeta(path: string): Promise<KeyCodebookMeta> {
  return metaFromSchema(path, (await readArrowSchema(path)).metadata);
}

/** The metadata the schema states; refuses other files and other format versions. */
function metaFromSchema(path: string, md: Map<string, string>): KeyCodebookMeta {
  const get = (k: string) => md.get(`commvq.${k}`);
  if (get('format') !== KEY_CODEBOOK_FORMAT) throw new CommvqError(`${path}: not a commvq key codebook (schema metadata commvq.format is ${get('format') ?? 'missing'})`);
  const method = get('method') === 'e2e' ? 'e2e' : 'em';
  if (Number(get('version')) !== KEY_CODEBOOK_VERSION) {
    throw new CommvqError(
      `${path}: key codebook format version ${get('version')}; this commvq reads version ${KEY_CODEBOOK_VERSION}`,
      `rewrite it with: commvq train-key ${get('data') ?? 'RUN_DIR'} --method ${method} --bits ${get('bits') ?? 1}`,
    );
  }
  const num = (k: string) => {
    const v = Number(get(k));
    if (!Number.isFinite(v)) throw new CommvqError(`${path}: schema metadata commvq.${k} is missing or not a number`);
    return v;
  };
  return {
    method, bits: num('bits'), residuals: num('residuals'), halfSize: num('half_size'), pairs: num('pairs'), headDim: num('head_dim'),
    kvHeads: num('kv_heads'), layout: 'PI', data: get('data') ?? '', model: get('model') ?? '', tokens: num('tokens'), heldout: num('heldout'), seed: num('seed'),
  };
}
