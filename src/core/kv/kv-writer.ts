import { closeSync, fsync, ftruncateSync, openSync, renameSync, write as writeCallback } from 'node:fs';
import { promisify } from 'node:util';
import { FixedSizeList, Float16, Int32, makeData, RecordBatch, Schema, Struct, Table, tableToIPC } from 'apache-arrow';
import { CommvqError } from '../errors.js';
import { partialPath } from '../io/atomic-write.js';

/**
 * Writes bytes to an open file at a byte position. Asynchronous (libuv's thread pool), so that a window's files are
 * written while the next window is computed. Tests replace it to simulate a full disk.
 */
export type WriteBytes = (fd: number, bytes: Uint8Array, position: number) => Promise<void>;

const writeAt = promisify(writeCallback);
const fsyncAsync = promisify(fsync);

export const writeAllBytes: WriteBytes = async (fd, bytes, position) => {
  let done = 0;
  while (done < bytes.byteLength) done += (await writeAt(fd, bytes, done, bytes.byteLength - done, position + done)).bytesWritten;
};

/** The 8-byte end-of-stream marker of the Arrow IPC stream format. */
export const END_OF_STREAM = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** The size of a finished kv file whose manifest records `committed` bytes: finish() adds only the end-of-stream marker. */
export function finishedKvBytes(committed: number): number {
  return committed + END_OF_STREAM.byteLength;
}

/**
 * Appends one record batch per window to an Arrow IPC stream under `<path>.partial`, and renames it to `path` when
 * finished. The caller records `bytes` after each committed window (in the run manifest); reopening with that count
 * truncates whatever a crash left past it, so a resumed run continues exactly where the last complete window ended.
 *
 *   const w = await KvStreamWriter.open('kv/key-L000.arrows', schema, undefined);  // new file: writes the schema
 *   await w.appendWindow(seq, ids, x); await w.sync(); manifest.bytes = w.bytes;   // one committed window
 *   await w.finish();                                                              // end-of-stream marker, rename
 */
export class KvStreamWriter {
  private fd: number | undefined;

  private template: WindowTemplate | undefined;

  private constructor(
    readonly path: string,
    readonly schema: Schema,
    private size: number,
    private readonly write: WriteBytes,
    fd: number,
  ) {
    this.fd = fd;
  }

  static async open(path: string, schema: Schema, committedBytes: number | undefined, write: WriteBytes = writeAllBytes): Promise<KvStreamWriter> {
    const partial = partialPath(path);
    if (committedBytes === undefined) {
      const fd = openSync(partial, 'w');
      const writer = new KvStreamWriter(path, schema, 0, write, fd);
      await writer.append(schemaMessage(schema));
      return writer;
    }
    let fd: number;
    try {
      fd = openSync(partial, 'r+');
    } catch {
      throw new CommvqError(`${partial}: missing, but the run manifest says ${committedBytes} bytes were written`, 'delete the run folder and start again');
    }
    ftruncateSync(fd, committedBytes); // drop a window a crash left half-written
    return new KvStreamWriter(path, schema, committedBytes, write, fd);
  }

  /** Bytes in the file so far. */
  get bytes(): number {
    return this.size;
  }

  async append(bytes: Uint8Array): Promise<void> {
    if (this.fd === undefined) throw new Error(`${this.path}: append after close`);
    const at = this.size;
    this.size += bytes.byteLength; // reserved now, so appends issued back to back land one after the other
    try {
      await this.write(this.fd, bytes, at); // explicit positions: a reopened file's cursor starts at 0
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC') throw new CommvqError(`${this.path}.partial: disk full`, 'free some space, then rerun the same command: it continues from the last complete window');
      throw new CommvqError(`${this.path}.partial: write failed: ${(err as Error).message}`);
    }
  }

  /**
   * Appends one window: its index in the run, token ids [T] and values [T, width] as f16 bits. The values are written
   * from the caller's buffer as they are (no copy); only the message head is built per window.
   */
  async appendWindow(seq: number, tokens: Int32Array, x: Uint16Array): Promise<void> {
    if (this.template?.rows !== tokens.length) this.template = WindowTemplate.make(this.schema, tokens.length);
    if (!this.template) return this.append(windowBatchMessage(this.schema, seq, tokens, x));
    const head = this.template.head(seq, tokens);
    const body = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    await Promise.all([this.append(head), this.append(body)]); // positions are reserved in call order
  }

  /** Flushes to the disk, so that a committed window survives a power cut. */
  async sync(): Promise<void> {
    if (this.fd !== undefined) await fsyncAsync(this.fd);
  }

  /** Ends the stream and moves the file to its final name. */
  async finish(): Promise<void> {
    await this.append(END_OF_STREAM);
    await this.sync();
    this.close();
    renameSync(partialPath(this.path), this.path);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The schema message that starts a stream. */
function schemaMessage(schema: Schema): Uint8Array {
  const bytes = tableToIPC(new Table(schema), 'stream');
  return bytes.subarray(0, bytes.byteLength - END_OF_STREAM.byteLength);
}

/**
 * The IPC message of one window's record batch, ready to append to a stream started with the same schema.
 * tokens [T] i32; x [T, width] f16 bits. `seq` is the window's index in the run.
 */
export function windowBatchMessage(schema: Schema, seq: number, tokens: Int32Array, x: Uint16Array): Uint8Array {
  const T = tokens.length;
  const xType = schema.fields[3]!.type as FixedSizeList<Float16>;
  if (x.length !== T * xType.listSize) throw new Error(`windowBatchMessage: ${x.length} values for ${T} rows of ${xType.listSize}`);
  const int32 = (values: Int32Array) => makeData({ type: new Int32(), length: T, nullCount: 0, data: values });
  const columns = [
    int32(new Int32Array(T).fill(seq)),
    int32(Int32Array.from({ length: T }, (_, i) => i)),
    int32(tokens),
    makeData({ type: xType, length: T, nullCount: 0, child: makeData({ type: new Float16(), length: x.length, nullCount: 0, data: x }) }),
  ];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: T, nullCount: 0, children: columns }));
  const stream = tableToIPC(new Table([batch]), 'stream');
  const schemaLength = schemaMessage(schema).byteLength;
  return stream.subarray(schemaLength, stream.byteLength - END_OF_STREAM.byteLength);
}

/**
 * A window's record-batch message is [prefix, metadata, seq | pos | token buffers, x buffer], and only the seq and
 * token buffers change from window to window of the same length: the template keeps everything before x and
 * patches those two buffers, so the 16 MiB x buffer is written straight from where it was downloaded. The layout is
 * verified on a serialized sample; `make` returns undefined (full serialization) if it ever differs.
 */
class WindowTemplate {
  private constructor(
    readonly rows: number,
    private readonly bytes: Uint8Array,
    private readonly seqAt: number,
    private readonly tokenAt: number,
  ) {}

  static make(schema: Schema, rows: number): WindowTemplate | undefined {
    const width = (schema.fields[3]!.type as FixedSizeList).listSize;
    const SEQ = 0x5eedc0de;
    const tokens = Int32Array.from({ length: rows }, (_, i) => 0x70000000 + i);
    const x = new Uint16Array(rows * width).fill(0x3c00);
    const sample = windowBatchMessage(schema, SEQ, tokens, x);
    const xBytes = x.byteLength;
    const headLength = sample.byteLength - xBytes;
    const ints = (at: number) => new Int32Array(sample.slice(at, at + rows * 4).buffer);
    const tokenAt = headLength - rows * 4;
    const posAt = tokenAt - rows * 4;
    const seqAt = posAt - rows * 4;
    const ok =
      seqAt > 0 &&
      ints(seqAt).every((v) => v === SEQ) &&
      ints(posAt).every((v, i) => v === i) &&
      ints(tokenAt).every((v, i) => v === tokens[i]) &&
      new Uint16Array(sample.slice(headLength).buffer).every((v) => v === 0x3c00);
    return ok ? new WindowTemplate(rows, sample.slice(0, headLength), seqAt, tokenAt) : undefined;
  }

  head(seq: number, tokens: Int32Array): Uint8Array {
    const head = this.bytes.slice();
    const view = new DataView(head.buffer);
    for (let i = 0; i < this.rows; i++) {
      view.setInt32(this.seqAt + 4 * i, seq, true);
      view.setInt32(this.tokenAt + 4 * i, tokens[i]!, true);
    }
    return head;
  }
}
