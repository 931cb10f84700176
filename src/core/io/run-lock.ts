/**
 * One writer per run or output folder: an exclusive lock file (`DIR/commvq.lock`, created with O_EXCL) holding the
 * owner's pid, host and start time. A second writer is refused with a CommvqError naming the folder and the owner,
 * before it touches anything in the folder; a lock left by a process that is no longer running on this host (a
 * SIGKILL, a second Ctrl-C) is taken over, with a warning through `onWarning`. Readers take no lock.
 *
 *   await withRunLock('runs/a', () => collectKv({ runDir: 'runs/a', ... }), { onWarning: (m) => log(m) });
 *
 * The lock is released when `fn` settles (success, error or an aborted run) and, as a backstop, when the process
 * exits. A folder the lock had to create is removed again if the run left it empty, so a refused or failed first run
 * leaves nothing behind.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CommvqError } from '../errors.js';

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the owner took the lock */
  since: string;
  /** what holds it, e.g. `commvq collect-kv` */
  command?: string;
}

export interface RunLockOptions {
  /** the lock's scope inside the folder: `commvq.lock` (default) or `commvq<scope>.lock`, e.g. one per eval shard */
  scope?: string;
  /** recorded in the lock file and shown to a refused writer */
  command?: string;
  /** a stale lock was taken over */
  onWarning?: (message: string) => void;
}

/** A second writer met a live lock: `owner` holds the folder. */
export class RunLockedError extends CommvqError {
  constructor(
    readonly dir: string,
    readonly lockPath: string,
    readonly owner: LockOwner | undefined,
  ) {
    const who = owner
      ? `${owner.command ?? 'another run'} (pid ${owner.pid} on ${owner.host}, since ${owner.since})`
      : `an unreadable lock ${lockPath}`;
    const hint = owner && owner.host !== hostname() ? `it runs on another machine; if it has stopped, delete ${lockPath}` : owner ? undefined : `if no commvq run uses the folder, delete ${lockPath}`;
    super(`${dir}: in use by ${who}; wait for it to finish or use another folder`, hint);
    this.name = 'RunLockedError';
  }
}

export function lockFileName(scope = ''): string {
  return `commvq${scope}.lock`;
}

const held = new Set<RunLock>();
let exitHandler: (() => void) | undefined;

export class RunLock {
  private released = false;

  private constructor(
    readonly dir: string,
    readonly path: string,
    readonly owner: LockOwner,
    /** the topmost folder acquire() created, removed on release when left empty */
    private readonly created: string | undefined,
  ) {}

  /** Takes the folder's lock (creating the folder if needed), or throws RunLockedError. */
  static acquire(dir: string, o: RunLockOptions = {}): RunLock {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new CommvqError(`${dir}: not a folder`, 'choose another output folder');
    const path = join(dir, lockFileName(o.scope));
    const owner: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), ...(o.command ? { command: o.command } : {}) };
    const created = mkdirSync(dir, { recursive: true });
    try {
      for (let attempt = 0; ; attempt++) {
        if (tryCreate(path, owner)) break;
        const other = readOwner(path);
        if (other === 'gone') {
          if (attempt < 10) continue; // released between our two calls: try again
          throw new RunLockedError(dir, path, undefined);
        }
        if (attempt < 2 && other !== undefined && isStale(other)) {
          removeIfUnchanged(path, other);
          o.onWarning?.(`${dir}: took over a stale lock of pid ${other.pid} (since ${other.since}), which is no longer running`);
          continue;
        }
        throw new RunLockedError(dir, path, other);
      }
    } catch (err) {
      removeEmpty(dir, created);
      throw err;
    }
    const lock = new RunLock(dir, path, owner, created);
    held.add(lock);
    exitHandler ??= installExitHandler();
    return lock;
  }

  /** Removes the lock file (if it is still ours) and a folder acquire() created that is still empty. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this);
    const now = readOwner(this.path);
    if (now !== 'gone' && now?.pid === this.owner.pid && now.since === this.owner.since) unlinkSync(this.path);
    removeEmpty(this.dir, this.created);
  }
}

/**
 * Runs `fn` holding `dir`'s lock, released however `fn` ends.
 *
 *   const summary = await withRunLock(flags.out, () => runPipeline({ out: flags.out, backend }), { command: 'commvq pipeline' });
 */
export async function withRunLock<T>(dir: string, fn: () => Promise<T> | T, o: RunLockOptions = {}): Promise<T> {
  const lock = RunLock.acquire(dir, o);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** Creates the lock file with O_EXCL; false if it exists. */
function tryCreate(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new CommvqError(`${path}: cannot create the run lock: ${(err as Error).message}`);
  }
  try {
    writeSync(fd, JSON.stringify(owner) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock's owner; 'gone' if the file vanished; undefined if it stays unreadable (a writer between open and write). */
function readOwner(path: string): LockOwner | 'gone' | undefined {
  for (let tries = 0; tries < 5; tries++) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw err;
    }
    try {
      const owner = JSON.parse(text) as LockOwner;
      if (Number.isInteger(owner.pid) && typeof owner.host === 'string') return owner;
    } catch {
      // being written: look again shortly
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  return undefined;
}

/** Stale: taken on this host by a process that is no longer running (ESRCH; EPERM means alive, another user's). */
function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname() || owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Deletes a stale lock unless another process replaced it since it was read. */
function removeIfUnchanged(path: string, stale: LockOwner): void {
  const now = readOwner(path);
  if (now === 'gone' || now === undefined || now.pid !== stale.pid || now.since !== stale.since) return;
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Removes `dir` and its parents up to `created` (the topmost folder made for the lock) while they are empty. */
function removeEmpty(dir: string, created: string | undefined): void {
  if (created === undefined) return;
  const top = resolve(created);
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty (the run wrote something), or gone
    }
    if (d === top || dirname(d) === d) return;
  }
}

/** A process that exits without unwinding (process.exit, an uncaught error) still releases its locks. */
function installExitHandler(): () => void {
  const handler = () => {
    for (const lock of [...held]) {
      try {
        lock.release();
      } catch {
        // exiting anyway
      }
    }
  };
  process.on('exit', handler);
  return handler;
}
