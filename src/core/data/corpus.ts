import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { CommvqError } from '../errors.js';
import { readArrowTable } from '../io/arrow-read.js';

/** The corpus formats collect-kv and train-value read. */
export type CorpusFormat = 'jsonl' | 'parquet' | 'arrow' | 'txt-folder';

export interface CorpusOptions {
  /** the text field of JSON lines, Parquet and Arrow records (default `text`) */
  field?: string;
}

/** Rows of a Parquet file read at a time: keeps memory bounded on multi-GB shards. */
const PARQUET_ROWS_PER_READ = 1024;

/** Which reader a path needs: by extension (`.jsonl`, `.json`, `.jsonl.gz`, `.parquet`, `.arrow`, `.arrows`, `.feather`), or a folder of .txt files. */
export function corpusFormat(path: string): CorpusFormat {
  if (!existsSync(path)) throw new CommvqError(`${path}: corpus not found`);
  if (statSync(path).isDirectory()) return 'txt-folder';
  const name = path.toLowerCase();
  if (/\.(jsonl|json|ndjson)(\.gz)?$/.test(name)) return 'jsonl';
  if (name.endsWith('.parquet')) return 'parquet';
  if (/\.(arrow|arrows|feather|ipc)$/.test(name)) return 'arrow';
  throw new CommvqError(`${path}: unknown corpus format '${extname(path)}' (JSON lines, .jsonl.gz, Parquet, Arrow IPC, or a folder of .txt files)`);
}

/**
 * The documents of a corpus, in file order, one string each, streamed (a large corpus is never held whole).
 * Errors name the file, and the line or row, and what is wrong.
 *
 *   for await (const doc of readCorpus('fineweb-edu/000_00000.parquet', { field: 'text' })) ...
 */
export async function* readCorpus(path: string, options: CorpusOptions = {}): AsyncGenerator<string> {
  const field = options.field ?? 'text';
  switch (corpusFormat(path)) {
    case 'jsonl':
      yield* readJsonLines(path, field);
      return;
    case 'parquet':
      yield* readParquet(path, field);
      return;
    case 'arrow':
      yield* readArrow(path, field);
      return;
    case 'txt-folder':
      yield* readTxtFolder(path);
      return;
  }
}

async function* readJsonLines(path: string, field: string): AsyncGenerator<string> {
  const raw = createReadStream(path);
  const input = path.toLowerCase().endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new CommvqError(`${path}:${lineNo}: not valid JSON`);
      }
      yield textField(record, field, `${path}:${lineNo}`);
    }
  } catch (err) {
    if (err instanceof CommvqError) throw err;
    throw new CommvqError(`${path}: cannot read: ${(err as Error).message}`);
  } finally {
    raw.destroy();
  }
}

async function* readParquet(path: string, field: string): AsyncGenerator<string> {
  let file: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  let rows: number;
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
    rows = Number(metadata.num_rows);
  } catch (err) {
    throw new CommvqError(`${path}: not a readable Parquet file: ${(err as Error).message}`);
  }
  const columns = metadata.schema.map((s) => s.name);
  if (!columns.includes(field)) throw new CommvqError(`${path}: no column '${field}' (columns: ${columns.slice(1).join(', ')})`, FIELD_HINT);
  for (let start = 0; start < rows; start += PARQUET_ROWS_PER_READ) {
    const records = await parquetReadObjects({ file, metadata, columns: [field], rowStart: start, rowEnd: Math.min(rows, start + PARQUET_ROWS_PER_READ), compressors });
    for (const [i, record] of records.entries()) yield textField(record, field, `${path} row ${start + i}`);
  }
}

async function* readArrow(path: string, field: string): AsyncGenerator<string> {
  const table = readArrowTable(path);
  const column = table.getChild(field);
  if (!column) throw new CommvqError(`${path}: no column '${field}' (columns: ${table.schema.fields.map((f) => f.name).join(', ')})`, FIELD_HINT);
  for (let i = 0; i < column.length; i++) {
    const value: unknown = column.get(i);
    if (typeof value !== 'string') throw new CommvqError(`${path} row ${i}: '${field}' is not text`);
    yield value;
  }
}

async function* readTxtFolder(dir: string): AsyncGenerator<string> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort(); // sorted: the same order everywhere
  if (files.length === 0) throw new CommvqError(`${dir}: no .txt files in the corpus folder`);
  for (const f of files) yield readFileSync(join(dir, f), 'utf8');
}

/** What to do when the records lack the text field asked for (the `field` option). */
const FIELD_HINT = 'choose the field that holds the text';

function textField(record: unknown, field: string, where: string): string {
  if (typeof record !== 'object' || record === null) throw new CommvqError(`${where}: a record must be an object`);
  const value = (record as Record<string, unknown>)[field];
  if (value === undefined) throw new CommvqError(`${where}: no field '${field}'`, FIELD_HINT);
  if (typeof value !== 'string') throw new CommvqError(`${where}: field '${field}' is not text`);
  return value;
}
