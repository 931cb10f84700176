import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { CommvqError } from '../errors.js';

/** A short content hash of a file (16 hex digits of SHA-256): how runs recognise the model they were made from. */
export function fileHash(path: string): string {
  if (!existsSync(path)) throw new CommvqError(`${path}: file not found`);
  return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
}
