import { Field, FixedSizeList, Float16, Int32, Schema } from 'apache-arrow';

/**
 * The on-disk format of collected keys and values: one Arrow IPC stream per layer and kind
 * (`RUN_DIR/kv/key-L007.arrows`), one record batch per window, one row per token:
 *   seq   int32  window index in the run (0-based, in collection order)
 *   pos   int32  position in the window (0..seqLen−1: positions restart every window, as the model saw them)
 *   token int32  the token id at that position
 *   x     FixedSizeList<Float16>[H_kv·D_h]  k_proj or v_proj output, HF channel layout (128·h + c), keys pre-RoPE
 * Float16 keeps 11 significant bits (more than the model's bf16) over ±65504, ample for projection outputs.
 * Schema metadata makes each file self-describing (KvFileMetadata). A stream (not the random-access file format)
 * so that windows append as they are made; read with pyarrow.ipc.open_stream or polars.read_ipc_stream.
 */
export const KV_FORMAT = 'commvq.kv';
export const KV_FORMAT_VERSION = 1;

export type KvKind = 'key' | 'value';

export interface KvFileMetadata {
  kind: KvKind;
  layer: number;
  /** channel layout of x: HF (128·h + c) */
  layout: 'HF';
  /** keys before RoPE (k_proj output); values have no RoPE */
  rope: 'pre' | 'none';
  dtype: 'f16';
  kvHeads: number;
  headDim: number;
  seqLen: number;
  model: string;
  configHash: string;
  tokenizerHash: string;
  corpus: string;
  seed: number;
}

export function kvFileName(kind: KvKind, layer: number): string {
  return `${kind}-L${String(layer).padStart(3, '0')}.arrows`;
}

/** The Arrow schema of one kv file, with its metadata as strings under `commvq.*` keys. */
export function kvSchema(meta: KvFileMetadata): Schema {
  const width = meta.kvHeads * meta.headDim;
  const metadata = new Map<string, string>([
    ['commvq.format', KV_FORMAT],
    ['commvq.version', String(KV_FORMAT_VERSION)],
    ...Object.entries(meta).map(([k, v]) => [`commvq.${k}`, String(v)] as [string, string]),
  ]);
  return new Schema(
    [
      new Field('seq', new Int32(), false),
      new Field('pos', new Int32(), false),
      new Field('token', new Int32(), false),
      new Field('x', new FixedSizeList(width, new Field('item', new Float16(), false)), false),
    ],
    metadata,
  );
}

/** Reads KvFileMetadata back from schema metadata; undefined fields mean the file is not a kv file. */
export function parseKvMetadata(metadata: Map<string, string>): Partial<KvFileMetadata> & { format?: string; version?: number } {
  const get = (k: string) => metadata.get(`commvq.${k}`);
  const num = (k: string) => (get(k) === undefined ? undefined : Number(get(k)));
  return {
    format: get('format'),
    version: num('version'),
    kind: get('kind') as KvKind | undefined,
    layer: num('layer'),
    layout: get('layout') as 'HF' | undefined,
    rope: get('rope') as 'pre' | 'none' | undefined,
    dtype: get('dtype') as 'f16' | undefined,
    kvHeads: num('kvHeads'),
    headDim: num('headDim'),
    seqLen: num('seqLen'),
    model: get('model'),
    configHash: get('configHash'),
    tokenizerHash: get('tokenizerHash'),
    corpus: get('corpus'),
    seed: num('seed'),
  };
}
