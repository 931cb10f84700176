/**
 * Paths of the wrong kind, found before any work: an output folder that is a file, an input file that is missing or
 * a folder. Each is an OptionError naming the option and the path, so the command line prints it under its flag
 * (`--out runs/a: is a file, not a folder`) and writes nothing.
 *
 *   checkOutputDir('out', 'runs/a')            // ok when runs/a is a folder or does not exist yet
 *   checkInputFile('promptFile', 'p.txt')       // ok when p.txt is a file
 */
import { statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { OptionError } from '../errors.js';

/** An output folder: absent (made later) or a folder, and no file on the way to it. */
export function checkOutputDir(option: string, path: string): void {
  for (let p = resolve(path); ; p = dirname(p)) {
    const stat = statOrUndefined(p);
    if (stat) {
      if (!stat.isDirectory()) throw new OptionError(option, path, p === resolve(path) ? 'is a file, not a folder' : `${p} is a file, not a folder`);
      return;
    }
    if (dirname(p) === p) return;
  }
}

/** An input file: present and a file, not a folder. */
export function checkInputFile(option: string, path: string): void {
  const stat = statOrUndefined(path);
  if (!stat) throw new OptionError(option, path, 'file not found');
  if (stat.isDirectory()) throw new OptionError(option, path, 'is a folder, not a file');
}

/** The path's stat, or undefined where nothing is there (ENOENT, or ENOTDIR: a file on the way). */
function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}
