import { existsSync, readFileSync } from 'node:fs';
import { CommvqError } from '../errors.js';

/** A UTF-8 text file; a missing or unreadable file is a CommvqError naming it. */
export function readTextFile(path: string): string {
  if (!existsSync(path)) throw new CommvqError(`${path}: file not found`);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CommvqError(`${path}: cannot read: ${(err as Error).message}`);
  }
}
