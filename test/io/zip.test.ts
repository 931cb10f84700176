/** The stored-entry zip writer and the seekable reader: torch's 64-byte alignment, ZIP64, and damage reported in one line. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/core/io/atomic-write.js';
import { ZipReader } from '../../src/core/io/zip-reader.js';
import { ZIP_FIELD_ALIGNMENT, ZipStoreWriter } from '../../src/core/io/zip-writer.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-zip-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const entries: [string, Uint8Array][] = [
  ['a/data.pkl', new TextEncoder().encode('pickle bytes')],
  ['a/data/0', Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff)],
  ['a/version', new TextEncoder().encode('3\n')],
  ['a/empty', new Uint8Array(0)],
];

function write(name: string, forceZip64 = false): string {
  const zip = new ZipStoreWriter({ forceZip64 });
  for (const [n, b] of entries) zip.add(n, b);
  const path = join(work, name);
  writeFileAtomic(path, zip.finish());
  return path;
}

describe('zip', () => {
  for (const forceZip64 of [false, true]) {
    it(`reads back every entry, whole and in part, each aligned to 64 bytes${forceZip64 ? ' (ZIP64 fields throughout)' : ''}`, () => {
      const zip = new ZipReader(write(`t${forceZip64}.zip`, forceZip64));
      try {
        expect(zip.entries.map((e) => e.name)).toEqual(entries.map(([n]) => n));
        for (const [n, b] of entries) {
          const e = zip.entry(n)!;
          expect(zip.read(e)).toEqual(b);
          expect(zip.dataOffset(e) % ZIP_FIELD_ALIGNMENT).toBe(0);
        }
        expect(zip.read(zip.entry('a/data/0')!, 10, 5)).toEqual(entries[1]![1].subarray(10, 15));
      } finally {
        zip.close();
      }
    });
  }

  it('refuses a compressed entry, naming it', () => {
    const path = write('deflated.zip');
    const bytes = readFileSync(path);
    const cd = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])); // first central directory entry: a/data.pkl
    bytes.writeUInt16LE(8, cd + 10);
    writeFileSync(path, bytes);
    const zip = new ZipReader(path);
    expect(() => zip.read(zip.entry('a/data.pkl')!)).toThrow(/damaged zip archive: entry a\/data\.pkl is compressed \(method 8\); torch\.save writes entries uncompressed/);
    zip.close();
  });

  it('refuses an entry whose bytes do not match its CRC-32 when read whole', () => {
    const path = write('flipped.zip');
    const bytes = readFileSync(path);
    const zip0 = new ZipReader(path);
    bytes[zip0.dataOffset(zip0.entry('a/data/0')!) + 3]! ^= 1;
    zip0.close();
    writeFileSync(path, bytes);
    const zip = new ZipReader(path);
    expect(() => zip.read(zip.entry('a/data/0')!)).toThrow(/damaged zip archive: entry a\/data\/0 does not match its CRC-32/);
    zip.close();
  });

  it('calls a cut file truncated, wherever it is cut', () => {
    const bytes = readFileSync(write('whole.zip'));
    for (const keep of [10, 200, bytes.length - 30, bytes.length - 1]) {
      const path = join(work, `cut${keep}.zip`);
      writeFileSync(path, bytes.subarray(0, keep));
      expect(() => new ZipReader(path), `cut at ${keep}`).toThrow(/truncated/);
    }
  });
});
