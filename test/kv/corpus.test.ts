/** Every corpus format yields the same documents in order; bad corpora are one-line errors naming file and line. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tableToIPC, tableFromArrays } from 'apache-arrow';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { readCorpus } from '../../src/core/data/corpus.js';
import { CommvqError } from '../../src/core/errors.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-corpus-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const DOCS = ['first document', 'second, with "quotes" and ünïcode', 'third\nwith a newline'];

async function collect(path: string, field?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const d of readCorpus(path, { field })) out.push(d);
  return out;
}

describe('readCorpus', () => {
  it('reads JSON lines, plain and gzipped, skipping blank lines', async () => {
    const lines = DOCS.map((text) => JSON.stringify({ text, id: 1 })).join('\n') + '\n\n';
    writeFileSync(join(work, 'c.jsonl'), lines);
    writeFileSync(join(work, 'c.jsonl.gz'), gzipSync(lines));
    expect(await collect(join(work, 'c.jsonl'))).toEqual(DOCS);
    expect(await collect(join(work, 'c.jsonl.gz'))).toEqual(DOCS);
  });

  it('reads Parquet and Arrow IPC columns named by --field', async () => {
    writeFileSync(join(work, 'c.parquet'), new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'body', data: DOCS, type: 'STRING' }, { name: 'n', data: [1, 2, 3], type: 'INT32' }] })));
    writeFileSync(join(work, 'c.arrow'), tableToIPC(tableFromArrays({ body: DOCS }), 'file'));
    expect(await collect(join(work, 'c.parquet'), 'body')).toEqual(DOCS);
    expect(await collect(join(work, 'c.arrow'), 'body')).toEqual(DOCS);
  });

  it('reads a folder of .txt files in sorted order', async () => {
    const dir = join(work, 'txt');
    mkdirSync(dir);
    DOCS.forEach((d, i) => writeFileSync(join(dir, `${2 - i}-doc.txt`), d)); // names sort in reverse of DOCS
    writeFileSync(join(dir, 'notes.md'), 'ignored');
    expect(await collect(dir)).toEqual([...DOCS].reverse());
  });

  it('names the file and line of bad records', async () => {
    writeFileSync(join(work, 'bad.jsonl'), '{"text": "ok"}\n{"text": oops}\n');
    writeFileSync(join(work, 'nofield.jsonl'), '{"content": "x"}\n');
    await expect(collect(join(work, 'bad.jsonl'))).rejects.toThrow(/bad\.jsonl:2: not valid JSON/);
    await expect(collect(join(work, 'nofield.jsonl'))).rejects.toThrow(/nofield\.jsonl:1: no field 'text'/);
    await expect(collect(join(work, 'c.parquet'), 'text')).rejects.toThrow(/c\.parquet: no column 'text' \(columns: body, n\)/);
    writeFileSync(join(work, 'junk.parquet'), 'not parquet at all');
    await expect(collect(join(work, 'junk.parquet'))).rejects.toThrow(CommvqError);
    await expect(collect(join(work, 'missing.jsonl'))).rejects.toThrow(/missing\.jsonl: corpus not found/);
    writeFileSync(join(work, 'c.csv'), 'text\nx\n');
    await expect(collect(join(work, 'c.csv'))).rejects.toThrow(/c\.csv: unknown corpus format '\.csv'/);
  });
});
