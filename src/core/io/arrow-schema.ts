import { open } from 'node:fs/promises';
import { RecordBatchReader, type Schema } from 'apache-arrow';
import { CommvqError } from '../errors.js';
import { arrowDamaged } from './arrow-read.js';

/**
 * The schema (fields and metadata) of an Arrow IPC file, read from its footer alone: a few KB whatever the file's
 * size, for callers that need a file's metadata (a codebook's geometry) but not its data.
 *
 *   const { metadata } = await readArrowSchema('runs/a/value-codebook-2bit.arrow');   // commvq.bits, ...
 */
export async function readArrowSchema(path: string): Promise<Schema> {
  let file;
  try {
    file = await open(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CommvqError(code === 'ENOENT' ? `${path}: file not found` : `${path}: cannot read: ${(err as Error).message}`);
  }
  try {
    const reader = await RecordBatchReader.from(file);
    await reader.open();
    if (!reader.isFile()) throw new Error('an Arrow stream, not an Arrow file');
    const schema = reader.schema;
    await reader.cancel();
    return schema;
  } catch (err) {
    throw arrowDamaged(path, err);
  } finally {
    await file.close();
  }
}
