import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import { CommvqError } from '../errors.js';
import { arrowDamaged } from '../io/arrow-read.js';
import { partialPath } from '../io/atomic-write.js';
import { f16ToF32 } from '../tensor/dtype.js';
import { checkKvFileSize, KV_DAMAGED_HINT } from './kv-integrity.js';
import { KV_FORMAT, KV_FORMAT_VERSION, kvFileName, parseKvMetadata, type KvFileMetadata, type KvKind } from './kv-format.js';
import { finishedKvBytes } from './kv-writer.js';
import { readManifest } from './run-manifest.js';

const CHUNK_BYTES = 16 << 20;

/** The file's bytes in 16 MiB chunks, read as they are consumed (a 2 GiB layer file is never loaded whole). */
function* fileChunks(path: string): Generator<Uint8Array> {
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const chunk = new Uint8Array(CHUNK_BYTES);
      const n = readSync(fd, chunk, 0, CHUNK_BYTES, null);
      if (n === 0) return;
      yield chunk.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** A finished kv file of a run: its metadata, checked, and its windows one record batch at a time. */
export class KvFile {
  private constructor(
    readonly path: string,
    readonly meta: KvFileMetadata,
  ) {}

  /** Opens `RUN_DIR/kv/<kind>-L<layer>.arrows`, checking that it is a finished kv file of that kind and layer. */
  static open(runDir: string, kind: KvKind, layer: number): KvFile {
    const path = join(runDir, 'kv', kvFileName(kind, layer));
    if (!existsSync(path)) {
      const partial = existsSync(partialPath(path));
      throw new CommvqError(
        `${runDir}: no collected ${kind === 'key' ? 'keys' : 'values'} for layer ${layer} (${path}${partial ? ' is still being collected' : ' is missing'})`,
        partial ? 'rerun commvq collect-kv to finish the run' : 'run commvq collect-kv first',
      );
    }
    const meta = readMetadata(path);
    if (meta.kind !== kind) throw new CommvqError(`${path}: holds ${meta.kind === 'value' ? 'values' : 'keys'}, not ${kind === 'key' ? 'keys' : 'values'}`);
    if (meta.layer !== layer) throw new CommvqError(`${path}: holds layer ${meta.layer}, not ${layer}`);
    if (kind === 'key' && meta.rope !== 'pre') throw new CommvqError(`${path}: keys are post-RoPE; CommVQ codebooks are trained on pre-RoPE keys (k_proj output)`, 'collect again with commvq collect-kv');
    // a file cut short (a copy that failed, a full disk) is refused by its size, before a reader meets its end; after
    // the checks above, which say more about a file of the wrong kind
    const committed = readManifest(runDir)?.collect?.files[kvFileName(kind, layer)];
    if (committed !== undefined) checkKvFileSize(path, finishedKvBytes(committed));
    return new KvFile(path, meta);
  }

  get width(): number {
    return this.meta.kvHeads * this.meta.headDim;
  }

  /** The windows in order, as record batches (columns seq, pos, token, x). */
  *batches(): Generator<RecordBatch> {
    try {
      yield* RecordBatchReader.from(fileChunks(this.path));
    } catch (err) {
      throw arrowDamaged(this.path, err, KV_DAMAGED_HINT);
    }
  }
}

function readMetadata(path: string): KvFileMetadata {
  let reader: RecordBatchReader;
  try {
    reader = RecordBatchReader.from(fileChunks(path));
    reader.open();
  } catch (err) {
    throw arrowDamaged(path, err, KV_DAMAGED_HINT);
  }
  const meta = parseKvMetadata(reader.schema.metadata);
  reader.cancel();
  if (meta.format !== KV_FORMAT) throw new CommvqError(`${path}: not a commvq kv file (schema metadata commvq.format is ${meta.format ?? 'missing'})`);
  if (meta.version !== KV_FORMAT_VERSION) {
    throw new CommvqError(`${path}: kv format version ${meta.version}, this commvq reads version ${KV_FORMAT_VERSION}`, 'collect again with this version of commvq collect-kv');
  }
  return meta as KvFileMetadata;
}

/** f16 bits → f32 values through a 64K-entry table (the per-element conversion dominates reading otherwise). */
const F16_TABLE = Float32Array.from({ length: 65536 }, (_, bits) => f16ToF32(bits));

export function decodeF16(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  for (let i = 0; i < bits.length; i++) out[i] = F16_TABLE[bits[i]!]!;
  return out;
}

/** The f16 bits of a batch's x column: [rows, width]. */
export function batchValues(batch: RecordBatch): Uint16Array {
  const x = batch.getChild('x')!;
  const child = x.data[0]!.children[0]!;
  return (child.values as Uint16Array).subarray(child.offset, child.offset + batch.numRows * (x.type as { listSize: number }).listSize);
}

/**
 * The first `maxTokens` collected rows of one layer and kind as f32 [N, width], HF layout (keys pre-RoPE).
 *
 *   const { rows, tokens, width } = readKvRows('runs/llama', 'key', 0, { maxTokens: 1 << 20 });
 */
export function readKvRows(
  runDir: string,
  kind: KvKind,
  layer: number,
  options: { maxTokens?: number } = {},
): { rows: Float32Array; width: number; headDim: number; kvHeads: number; tokens: number } {
  const file = KvFile.open(runDir, kind, layer);
  const batches: Uint16Array[] = [];
  let tokens = 0;
  const limit = options.maxTokens ?? Infinity;
  for (const batch of file.batches()) {
    if (tokens >= limit) break;
    const take = Math.min(batch.numRows, limit - tokens);
    batches.push(batchValues(batch).subarray(0, take * file.width));
    tokens += take;
  }
  const rows = new Float32Array(tokens * file.width);
  let at = 0;
  for (const b of batches) {
    decodeF16(b, rows.subarray(at, at + b.length));
    at += b.length;
  }
  return { rows, width: file.width, headDim: file.meta.headDim, kvHeads: file.meta.kvHeads, tokens };
}
