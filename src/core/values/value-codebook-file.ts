import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table, tableToIPC } from 'apache-arrow';
import type { Backend } from '../backend/backend.js';
import { BIT_WIDTHS, BITS_PROBLEM, type Bits } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import { readArrowTable } from '../io/arrow-read.js';
import { readArrowSchema } from '../io/arrow-schema.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { compressorShape, PARAM_NAMES, paramShapes, type ParamName, type ValueCompressorParams, type ValueCompressorShape } from './value-compressor.js';

/**
 * The trained value compressors of a run: one Arrow IPC file, one row per layer (a record batch each; files of one
 * batch of all layers, as written before, read the same), each tensor a FixedSizeList<f32>
 * column (row-major, shapes in the metadata), plus the frozen scale. Metadata: format name and version, bits, the
 * sizes, and how it was trained.
 */
export const VALUE_CODEBOOK_FORMAT = 'commvq.value-codebook';
export const VALUE_CODEBOOK_VERSION = 1;

const COLUMNS: Record<ParamName | 'scale', string> = {
  lnGamma: 'ln_gamma', lnBeta: 'ln_beta', w1: 'enc1_weight', b1: 'enc1_bias', w2: 'out_weight', b2: 'out_bias', codebook: 'codebook', scale: 'scale',
};

export interface ValueCodebookLayer {
  layer: number;
  params: Record<ParamName, Float32Array>;
  scale: Float32Array;
}

export function writeValueCodebook(path: string, shape: ValueCompressorShape, layers: ValueCodebookLayer[], info: Record<string, string | number>): void {
  const shapes = { ...paramShapes(shape), scale: [shape.featDim] };
  const names = [...PARAM_NAMES, 'scale'] as const;
  const fields = [new Field('layer', new Int32(), false), ...names.map((n) => new Field(COLUMNS[n], listType(shapes[n]), false))];
  const metadata = new Map<string, string>([
    ['commvq.format', VALUE_CODEBOOK_FORMAT],
    ['commvq.version', String(VALUE_CODEBOOK_VERSION)],
    ['commvq.bits', String(shape.bits)],
    ['commvq.feat_dim', String(shape.featDim)],
    ['commvq.groups', String(shape.groups)],
    ['commvq.inter', String(shape.inter)],
    ['commvq.shapes', JSON.stringify(Object.fromEntries(names.map((n) => [COLUMNS[n], shapes[n]])))],
    ...Object.entries(info).map(([k, v]) => [`commvq.${k}`, String(v)] as [string, string]),
  ]);
  const schema = new Schema(fields, metadata);
  // one record batch per layer: Arrow JS cannot read back a batch whose body passes 2 GiB (a 2-bit Llama-8B codebook
  // is 2.95 GB: every column came back empty), and the layers' arrays go in without a copy
  const batches = layers.map((l) => {
    const columns = [
      makeData({ type: new Int32(), length: 1, nullCount: 0, data: Int32Array.of(l.layer) }),
      ...names.map((name, i) => {
        const data = name === 'scale' ? l.scale : l.params[name];
        const size = shapes[name].reduce((a, b) => a * b, 1);
        if (data.length !== size) throw new Error(`writeValueCodebook: layer ${l.layer} ${name} has ${data.length} values, [${shapes[name].join(', ')}] needs ${size}`);
        const type = fields[i + 1]!.type as FixedSizeList<Float32>;
        return makeData({ type, length: 1, nullCount: 0, child: makeData({ type: new Float32(), length: size, nullCount: 0, data }) });
      }),
    ];
    return new RecordBatch(schema, makeData({ type: new Struct(fields), length: 1, nullCount: 0, children: columns }));
  });
  writeFileAtomic(path, [tableToIPC(batches.length > 0 ? new Table(batches) : new Table(schema), 'file')]);
}

function listType(shape: number[]): FixedSizeList<Float32> {
  return new FixedSizeList(shape.reduce((a, b) => a * b, 1), new Field('item', new Float32(), false));
}

/** The compressor's shape a value-codebook file holds, from its footer alone (its data is not read). */
export async function readValueCodebookShape(path: string): Promise<ValueCompressorShape> {
  return shapeFromMetadata(path, (await readArrowSchema(path)).metadata);
}

/** The shape the schema metadata states; refuses other files and other format versions. */
function shapeFromMetadata(path: string, meta: Map<string, string>): ValueCompressorShape {
  if (meta.get('commvq.format') !== VALUE_CODEBOOK_FORMAT) throw new CommvqError(`${path}: not a commvq value codebook`);
  if (Number(meta.get('commvq.version')) !== VALUE_CODEBOOK_VERSION) {
    throw new CommvqError(`${path}: value-codebook version ${meta.get('commvq.version')}, this commvq reads ${VALUE_CODEBOOK_VERSION}`, 'retrain with commvq train-value');
  }
  const bits = Number(meta.get('commvq.bits'));
  if (!BIT_WIDTHS.includes(bits as Bits)) throw new CommvqError(`${path}: schema metadata commvq.bits is ${meta.get('commvq.bits')}; ${BITS_PROBLEM}`);
  return compressorShape(bits as Bits, Number(meta.get('commvq.feat_dim')));
}

/** Reads a value-codebook file back onto a backend: per layer, the compressor's parameters and its scale. */
export function readValueCodebook(path: string, backend: Backend): { shape: ValueCompressorShape; layers: Map<number, { params: ValueCompressorParams; scale: ReturnType<Backend['fromArray']> }>; metadata: Map<string, string> } {
  const table = readArrowTable(path, 'train it again with commvq train-value');
  const meta = table.schema.metadata;
  const shape = shapeFromMetadata(path, meta);
  const shapes = { ...paramShapes(shape), scale: [shape.featDim] };
  const layers = new Map<number, { params: ValueCompressorParams; scale: ReturnType<Backend['fromArray']> }>();
  for (const batch of table.batches) {
    for (let r = 0; r < batch.numRows; r++) {
      const tensor = (name: ParamName | 'scale') => {
        const data = batch.getChild(COLUMNS[name])!.data[0]!;
        const child = data.children[0]!;
        const size = shapes[name].reduce((a, b) => a * b, 1);
        const start = child.offset + (data.offset + r) * size;
        return backend.fromArray((child.values as Float32Array).subarray(start, start + size), shapes[name], 'f32');
      };
      const params = Object.fromEntries(PARAM_NAMES.map((n) => [n, tensor(n)])) as unknown as ValueCompressorParams;
      layers.set(batch.getChild('layer')!.get(r) as number, { params, scale: tensor('scale') });
    }
  }
  return { shape, layers, metadata: meta };
}
