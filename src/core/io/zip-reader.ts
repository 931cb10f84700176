/**
 * A seekable reader of ZIP archives whose entries are stored uncompressed — what `torch.save` writes (PyTorch's
 * zip writer, miniz, with ZIP64 enabled and no compression). Only the end records and the central directory are read
 * on open; an entry's bytes are read on demand at its offset, so a 340 MB file costs what the caller reads of it.
 * ZIP64 end records and per-entry ZIP64 extra fields are followed (entries or archives past 4 GiB). A compressed entry,
 * a cut or damaged archive, an entry running past the end, a whole entry read back with another CRC-32: one line
 * naming the file, never a garbage read.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { CommvqError } from '../errors.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored; anything else is refused when read */
  method: number;
  size: number;
  compressedSize: number;
  crc32: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;

/**
 * One archive, open until close().
 *
 *   const zip = new ZipReader('000_0.pt');
 *   const pkl = zip.read(zip.entry('000_0/data.pkl')!);
 *   zip.close();
 */
export class ZipReader {
  readonly entries: ZipEntry[] = [];
  readonly size: number;
  private fd: number | undefined;
  private readonly byName = new Map<string, ZipEntry>();

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new CommvqError(`${path}: file not found`);
    this.fd = openSync(path, 'r');
    try {
      this.size = fstatSync(this.fd).size;
      this.readDirectory();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** Bytes [offset, offset + length) of a stored entry (default: all of it, checked against its CRC-32). */
  read(e: ZipEntry, offset = 0, length = e.size - offset): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > e.size) throw new Error(`${this.path}: read of [${offset}, ${offset + length}) outside ${e.name} (${e.size} bytes)`);
    const out = new Uint8Array(length);
    this.readAt(out, this.dataOffset(e) + offset, `entry ${e.name}`);
    if (length === e.size && crc32(out) !== e.crc32) throw this.fail(`entry ${e.name} does not match its CRC-32`);
    return out;
  }

  /** Where a stored entry's bytes start in the file (after its local header). */
  dataOffset(e: ZipEntry): number {
    if (e.method !== 0) throw this.fail(`entry ${e.name} is compressed (method ${e.method}); torch.save writes entries uncompressed`);
    if (e.compressedSize !== e.size) throw this.fail(`entry ${e.name} is stored with ${e.compressedSize} bytes for ${e.size}`);
    const header = Buffer.alloc(30);
    this.readAt(header, e.localHeaderOffset, `the local header of ${e.name}`);
    if (header.readUInt32LE(0) !== LOCAL) throw this.fail(`entry ${e.name} has no local header at offset ${e.localHeaderOffset}`);
    const start = e.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (start + e.size > this.size) throw this.fail(`entry ${e.name} runs past the end of the file (truncated?)`);
    return start;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private fail(what: string): CommvqError {
    return new CommvqError(`${this.path}: damaged zip archive: ${what}`);
  }

  private readAt(into: Uint8Array, position: number, what: string): void {
    if (this.fd === undefined) throw new Error(`${this.path}: read after close`);
    let done = 0;
    while (done < into.byteLength) {
      const got = readSync(this.fd, into, done, into.byteLength - done, position + done);
      if (got === 0) throw this.fail(`${what} is cut short at byte ${position + done} (truncated file?)`);
      done += got;
    }
  }

  private readDirectory(): void {
    if (this.size < 22) throw new CommvqError(`${this.path}: not a zip archive (${this.size} bytes; truncated?)`);
    const tailLength = Math.min(this.size, 22 + 0xffff);
    const tail = Buffer.alloc(tailLength);
    this.readAt(tail, this.size - tailLength, 'the end of the archive');
    let at = -1;
    for (let i = tailLength - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD) {
        at = i;
        break;
      }
    }
    if (at < 0) throw new CommvqError(`${this.path}: not a zip archive, or a truncated one (no end-of-central-directory record)`);
    const eocdOffset = this.size - tailLength + at;
    let count = tail.readUInt16LE(at + 10);
    let cdSize = tail.readUInt32LE(at + 12);
    let cdOffset = tail.readUInt32LE(at + 16);
    if (eocdOffset >= 20) {
      const locator = Buffer.alloc(20);
      this.readAt(locator, eocdOffset - 20, 'the ZIP64 locator');
      if (locator.readUInt32LE(0) === EOCD64_LOCATOR) {
        const rec = Buffer.alloc(56);
        const recOffset = Number(locator.readBigUInt64LE(8));
        if (recOffset + 56 > this.size) throw this.fail('the ZIP64 end record lies past the end of the file');
        this.readAt(rec, recOffset, 'the ZIP64 end record');
        if (rec.readUInt32LE(0) !== EOCD64) throw this.fail('no ZIP64 end record where the locator points');
        count = Number(rec.readBigUInt64LE(32));
        cdSize = Number(rec.readBigUInt64LE(40));
        cdOffset = Number(rec.readBigUInt64LE(48));
      }
    }
    if (cdOffset + cdSize > eocdOffset) throw this.fail(`the central directory [${cdOffset}, ${cdOffset + cdSize}) overlaps the end records (truncated?)`);
    const cd = Buffer.alloc(cdSize);
    this.readAt(cd, cdOffset, 'the central directory');
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw this.fail(`central directory entry ${i} is damaged`);
      const nameLength = cd.readUInt16LE(p + 28);
      const extraLength = cd.readUInt16LE(p + 30);
      const commentLength = cd.readUInt16LE(p + 32);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLength);
      const e: ZipEntry = {
        name,
        method: cd.readUInt16LE(p + 10),
        crc32: cd.readUInt32LE(p + 16),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        localHeaderOffset: cd.readUInt32LE(p + 42),
      };
      applyZip64(e, cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength), () => this.fail(`entry ${name} lacks the ZIP64 sizes its header promises`));
      if (e.localHeaderOffset + 30 > cdOffset) throw this.fail(`entry ${name} starts past the data area`);
      this.entries.push(e);
      this.byName.set(name, e);
      p += 46 + nameLength + extraLength + commentLength;
    }
  }
}

/** Fields saturated at 0xFFFFFFFF come from the ZIP64 extra field (id 1), in the order the format fixes. */
function applyZip64(e: ZipEntry, extra: Buffer, fail: () => Error): void {
  if (e.size !== U32_MAX && e.compressedSize !== U32_MAX && e.localHeaderOffset !== U32_MAX) return;
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(q);
    const len = extra.readUInt16LE(q + 2);
    if (id === 1) {
      let r = q + 4;
      const next = (): number => {
        if (r + 8 > q + 4 + len) throw fail();
        const v = Number(extra.readBigUInt64LE(r));
        r += 8;
        return v;
      };
      if (e.size === U32_MAX) e.size = next();
      if (e.compressedSize === U32_MAX) e.compressedSize = next();
      if (e.localHeaderOffset === U32_MAX) e.localHeaderOffset = next();
      return;
    }
    q += 4 + len;
  }
  throw fail();
}
