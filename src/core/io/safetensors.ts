/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
 * { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data section after the header), then the
 * data. Readers check every offset against the file before trusting it, so a truncated or corrupt file is reported
 * as one line naming the file, never as a crash or a silent garbage read.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';

/** The element types of the format, with their sizes in bytes. */
export const SAFETENSORS_DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
  file: string;
}

/** One safetensors file, header parsed and validated; tensor bytes are read on demand. */
export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string>;
  private fd: number | undefined;

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new CommvqError(`${path}: file not found`);
    this.fd = openSync(path, 'r');
    try {
      this.metadata = this.readHeader(fstatSync(this.fd).size);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** The raw little-endian bytes of one tensor. */
  read(name: string): Uint8Array {
    const info = this.tensors.get(name);
    if (!info) throw new CommvqError(`${this.path}: no tensor named '${name}'`);
    if (this.fd === undefined) throw new Error(`${this.path}: read after close`);
    const out = new Uint8Array(info.end - info.begin);
    const got = readSync(this.fd, out, 0, out.byteLength, info.begin);
    if (got !== out.byteLength) throw new CommvqError(`${this.path}: tensor '${name}' is truncated`);
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private readHeader(fileSize: number): Record<string, string> {
    const fail = (what: string): never => {
      throw new CommvqError(`${this.path}: corrupt safetensors file: ${what}`);
    };
    if (fileSize < 8) fail(`${fileSize} bytes is too short for the 8-byte header length`);
    const lengthBytes = Buffer.alloc(8);
    readSync(this.fd!, lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (8 + headerLength > fileSize) fail(`header length ${headerLength} runs past the end of the file (${fileSize} bytes)`);
    const headerBytes = Buffer.alloc(headerLength);
    readSync(this.fd!, headerBytes, 0, headerLength, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBytes.toString('utf8'));
    } catch {
      fail('header is not valid JSON');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
    const dataStart = 8 + headerLength;
    const dataSize = fileSize - dataStart;
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (entry ?? {}) as Record<string, string>;
        continue;
      }
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = e?.dtype as SafetensorsDType;
      if (!(String(dtype) in SAFETENSORS_DTYPE_BYTES)) fail(`tensor '${name}' has unknown dtype ${JSON.stringify(e?.dtype)}`);
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor '${name}' has a bad shape`);
      const offsets = e.data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
        fail(`tensor '${name}' has bad data_offsets`);
      }
      const [begin, end] = offsets as [number, number];
      if (begin > end || end > dataSize) fail(`tensor '${name}' data offsets [${begin}, ${end}] are outside the data section (${dataSize} bytes)`);
      const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype];
      if (end - begin !== bytes) fail(`tensor '${name}' holds ${end - begin} bytes but ${dtype}[${(shape as number[]).join(', ')}] needs ${bytes}`);
      this.tensors.set(name, { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end, file: this.path });
    }
    return metadata;
  }
}

/**
 * A checkpoint folder: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
 * Tensors are looked up by name across shards; each shard is opened once and validated on open.
 *
 *   const ckpt = SafetensorsCheckpoint.open('Llama-3.1-8B');
 *   const bytes = ckpt.read('model.norm.weight'); ckpt.close();
 */
export class SafetensorsCheckpoint {
  private constructor(private readonly files: SafetensorsFile[]) {}

  static open(dir: string): SafetensorsCheckpoint {
    const single = join(dir, 'model.safetensors');
    const index = join(dir, 'model.safetensors.index.json');
    if (existsSync(index)) {
      let weightMap: Record<string, string>;
      try {
        weightMap = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
      } catch {
        throw new CommvqError(`${index}: not valid JSON`);
      }
      if (typeof weightMap !== 'object' || weightMap === null) throw new CommvqError(`${index}: missing 'weight_map'`);
      const shards = [...new Set(Object.values(weightMap))].sort();
      const files: SafetensorsFile[] = [];
      try {
        for (const shard of shards) files.push(new SafetensorsFile(join(dir, shard)));
      } catch (err) {
        files.forEach((f) => f.close());
        throw err;
      }
      return new SafetensorsCheckpoint(files);
    }
    if (existsSync(single)) return new SafetensorsCheckpoint([new SafetensorsFile(single)]);
    throw new CommvqError(`${dir}: no model.safetensors or model.safetensors.index.json`);
  }

  /** Every tensor, in shard order then file order. */
  list(): TensorInfo[] {
    return this.files.flatMap((f) => [...f.tensors.values()]);
  }

  info(name: string): TensorInfo | undefined {
    for (const f of this.files) {
      const t = f.tensors.get(name);
      if (t) return t;
    }
    return undefined;
  }

  read(name: string): Uint8Array {
    const f = this.files.find((file) => file.tensors.has(name));
    if (!f) throw new CommvqError(`${this.describe()}: no tensor named '${name}'`);
    return f.read(name);
  }

  close(): void {
    this.files.forEach((f) => f.close());
  }

  private describe(): string {
    return this.files.length === 1 ? this.files[0]!.path : `${dirname(this.files[0]!.path)} (${this.files.map((f) => basename(f.path)).join(', ')})`;
  }
}

/** A tensor to write: raw little-endian bytes, or a typed array whose bytes are written as they are. */
export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * Writes tensors (in the order given) to a safetensors file, atomically. The header is padded with spaces to a
 * multiple of 8 bytes so that every tensor is 8-byte aligned, as the Rust writer does.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const bodies: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (bytes.byteLength !== expected) throw new Error(`writeSafetensors: '${name}' has ${bytes.byteLength} bytes, ${t.dtype}[${t.shape}] needs ${expected}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    bodies.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(jsonBytes.byteLength));
  writeFileAtomic(path, [length, jsonBytes, ...bodies]);
}
