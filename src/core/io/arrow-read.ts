import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { tableFromIPC, type Table } from 'apache-arrow';
import { CommvqError } from '../errors.js';

/**
 * The one message for an Arrow file (or stream) that cannot be read: the file named and called truncated or damaged.
 * apache-arrow's own messages name no file ("Expected to read 137216 bytes for message body, but only read 67908"), and
 * for a cut file-format footer they are a TypeError about its internals, which is noise to a user and left out.
 *
 *   throw arrowDamaged('runs/a/kv/key-L001.arrows', err, 'collect again into a new RUN_DIR');
 *   // 'runs/a/kv/key-L001.arrows: truncated or damaged Arrow file (Expected to read 137216 bytes ...)'
 */
export function arrowDamaged(path: string, err: unknown, hint?: string): CommvqError {
  const detail = err instanceof Error && !(err instanceof TypeError) ? ` (${err.message})` : '';
  return new CommvqError(`${path}: truncated or damaged Arrow file${detail}`, hint);
}

/**
 * A whole Arrow IPC file read into a table, or the arrowDamaged line. Callers check that the file exists first (each
 * says in its own words what is missing and which command makes it).
 *
 *   const table = readArrowTable('runs/a/scale.arrow', 'rerun commvq make-scale');
 */
export function readArrowTable(path: string, hint?: string): Table {
  let bytes: Buffer;
  try {
    bytes = readWhole(path);
  } catch (err) {
    throw new CommvqError(`${path}: cannot read: ${(err as Error).message}`); // a folder, no permission: not damage
  }
  try {
    return tableFromIPC(bytes);
  } catch (err) {
    throw arrowDamaged(path, err, hint);
  }
}

/** A whole file in one buffer, read in slices: readFileSync refuses files of 2 GiB and more (a 2-bit Llama-8B value codebook is 2.95 GB). */
function readWhole(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = Buffer.allocUnsafe(size);
    for (let done = 0; done < size; ) {
      const got = readSync(fd, out, done, Math.min(1 << 30, size - done), done);
      if (got === 0) throw new Error(`file ended at byte ${done} of ${size}`);
      done += got;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
