/**
 * Writes a ZIP archive of stored (uncompressed) entries the way PyTorch's archive writer lays them out: each entry's
 * data aligned to 64 bytes by an 'FB' extra field of 'Z' padding in its local header, ZIP64 extra fields for an
 * entry or offset past 4 GiB, and ZIP64 end records always (torch's writer enables ZIP64 for every archive). No
 * timestamps (all zero), so the same content gives the same bytes.
 *
 *   const zip = new ZipStoreWriter();
 *   zip.add('000_0/data.pkl', pickleBytes);
 *   writeFileAtomic('000_0.pt', zip.finish());
 */
import { crc32 } from 'node:zlib';

/** torch's kFieldAlignment: where every record's bytes start, modulo. */
export const ZIP_FIELD_ALIGNMENT = 64;

const U32_MAX = 0xffffffff;

interface Written {
  name: Buffer;
  size: number;
  crc: number;
  offset: number;
}

export class ZipStoreWriter {
  private readonly chunks: Uint8Array[] = [];
  private readonly written: Written[] = [];
  private position = 0;

  /** `forceZip64`: every entry's sizes and offset in ZIP64 extra fields, as past 4 GiB (tests the reader's path). */
  constructor(private readonly o: { forceZip64?: boolean } = {}) {}

  add(name: string, data: Uint8Array): void {
    const nameBytes = Buffer.from(name, 'utf8');
    const big = this.o.forceZip64 || data.byteLength >= U32_MAX || this.position >= U32_MAX;
    const zip64 = big ? zip64Extra(data.byteLength, this.position) : Buffer.alloc(0);
    const before = this.position + 30 + nameBytes.length + zip64.length + 4;
    const padding = (ZIP_FIELD_ALIGNMENT - (before % ZIP_FIELD_ALIGNMENT)) % ZIP_FIELD_ALIGNMENT;
    const fb = Buffer.alloc(4 + padding, 'Z');
    fb.write('FB', 0, 'latin1');
    fb.writeUInt16LE(padding, 2);
    const crc = crc32(data);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(big ? 45 : 20, 4); // version needed
    header.writeUInt16LE(0, 6); // flags
    header.writeUInt16LE(0, 8); // stored
    header.writeUInt32LE(0, 10); // time, date
    header.writeUInt32LE(crc, 14);
    header.writeUInt32LE(big ? U32_MAX : data.byteLength, 18);
    header.writeUInt32LE(big ? U32_MAX : data.byteLength, 22);
    header.writeUInt16LE(nameBytes.length, 26);
    header.writeUInt16LE(zip64.length + fb.length, 28);
    this.written.push({ name: nameBytes, size: data.byteLength, crc, offset: this.position });
    for (const c of [header, nameBytes, zip64, fb, data]) this.push(c);
  }

  /** The whole archive: entries, central directory, ZIP64 end record and locator, end record. */
  finish(): Uint8Array[] {
    const cdOffset = this.position;
    for (const w of this.written) {
      const big = this.o.forceZip64 || w.size >= U32_MAX || w.offset >= U32_MAX;
      const zip64 = big ? zip64Extra(w.size, w.offset) : Buffer.alloc(0);
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE(big ? 45 : 20, 4); // made by
      h.writeUInt16LE(big ? 45 : 20, 6); // needed
      h.writeUInt32LE(w.crc, 16);
      h.writeUInt32LE(big ? U32_MAX : w.size, 20);
      h.writeUInt32LE(big ? U32_MAX : w.size, 24);
      h.writeUInt16LE(w.name.length, 28);
      h.writeUInt16LE(zip64.length, 30);
      h.writeUInt32LE(big ? U32_MAX : w.offset, 42);
      for (const c of [h, w.name, zip64]) this.push(c);
    }
    const cdSize = this.position - cdOffset;
    const eocd64Offset = this.position;
    const e64 = Buffer.alloc(56);
    e64.writeUInt32LE(0x06064b50, 0);
    e64.writeBigUInt64LE(44n, 4); // size of the rest of the record
    e64.writeUInt16LE(45, 12);
    e64.writeUInt16LE(45, 14);
    e64.writeBigUInt64LE(BigInt(this.written.length), 24);
    e64.writeBigUInt64LE(BigInt(this.written.length), 32);
    e64.writeBigUInt64LE(BigInt(cdSize), 40);
    e64.writeBigUInt64LE(BigInt(cdOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(eocd64Offset), 8);
    locator.writeUInt32LE(1, 16);
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(Math.min(0xffff, this.written.length), 8);
    eocd.writeUInt16LE(Math.min(0xffff, this.written.length), 10);
    eocd.writeUInt32LE(Math.min(U32_MAX, cdSize), 12);
    eocd.writeUInt32LE(Math.min(U32_MAX, cdOffset), 16);
    for (const c of [e64, locator, eocd]) this.push(c);
    return this.chunks;
  }

  private push(c: Uint8Array): void {
    this.chunks.push(c);
    this.position += c.byteLength;
  }
}

/** The ZIP64 extra field (id 1): uncompressed size, compressed size, local header offset. */
function zip64Extra(size: number, offset: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16LE(1, 0);
  b.writeUInt16LE(24, 2);
  b.writeBigUInt64LE(BigInt(size), 4);
  b.writeBigUInt64LE(BigInt(size), 12);
  b.writeBigUInt64LE(BigInt(offset), 20);
  return b;
}
