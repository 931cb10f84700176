import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Where an output that grows over a long run (a kv stream, a codebook trained layer by layer) is kept until it is
 * whole: resumable, but never under the name a later stage or a user takes for a finished file.
 */
export function partialPath(path: string): string {
  return `${path}.partial`;
}

/**
 * Writes a file under a temporary name beside it, then renames it into place, so a reader never sees half a file
 * and an interrupted run leaves the old file (or none) behind.
 *
 *   writeFileAtomic('out/scale.arrow', [header, body]);
 */
export function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done);
    }
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw err;
  }
}
