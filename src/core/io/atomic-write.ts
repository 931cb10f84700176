import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Where an output that grows over a long run (a kv stream, a codebook trained layer by layer) is kept until it is
 * whole: resumable, but never under the name a later stage or a user takes for a finished file.
 */
export function partialPath(path: string): string {
  return `${path}.partial`;
}

const WRITE_SLICE = 1 << 30;

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
      let done = 0; // in slices: one write takes at most 2 GiB − 1 (a 2-bit Llama-8B value codebook is 2.95 GB)
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, Math.min(WRITE_SLICE, chunk.byteLength - done));
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
