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

/** A JSON file, parsed; missing, unreadable or not JSON is a CommvqError naming it (with `hint` for the last). */
export function readJsonFile<T>(path: string, hint?: string): T {
  const text = readTextFile(path);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CommvqError(`${path}: not valid JSON`, hint);
  }
}
