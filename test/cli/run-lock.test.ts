/**
 * One writer per run folder (src/core/io/run-lock.ts): a second writer is refused with one line naming the folder
 * and the owner and touches nothing; a stale lock from a dead process is taken over with a warning; the folder stays
 * usable. And a collect-kv that failed before its first window leaves nothing that refuses the corrected rerun.
 * The second writer is simulated with a lock file of a live pid (this test's own); a dead pid is one that has exited.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { RunLock, RunLockedError, withRunLock, type LockOwner } from '../../src/core/io/run-lock.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { fixtureDir, haveFixture } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-lock-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const corpus = join(work, 'essays.jsonl');
writeFileSync(corpus, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `Essay ${i}. ` + 'The quick brown fox jumps over the lazy dog. '.repeat(4 + (i % 5)) })).join('\n'));

/** A pid that is not running: a child that has exited. */
const deadPid = spawnSync(process.execPath, ['-e', '']).pid;

function writeLock(dir: string, pid: number, since = '2026-01-01T00:00:00.000Z'): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'commvq.lock');
  writeFileSync(path, JSON.stringify({ pid, host: hostname(), since, command: 'commvq collect-kv' } satisfies LockOwner));
  return path;
}

/** Every file under a folder with a digest of its bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out[p.slice(dir.length)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

describe('RunLock', () => {
  it('refuses a second holder, names the owner, and frees the folder on release', () => {
    const dir = join(work, 'unit');
    const lock = RunLock.acquire(dir, { command: 'commvq test' });
    expect(JSON.parse(readFileSync(join(dir, 'commvq.lock'), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname(), command: 'commvq test' });
    expect(() => RunLock.acquire(dir)).toThrow(RunLockedError);
    expect(() => RunLock.acquire(dir)).toThrow(new RegExp(`unit: in use by commvq test \\(pid ${process.pid} on ${hostname()}, since `));
    RunLock.acquire(dir, { scope: '.shard-0-of-2' }).release(); // another scope in the same folder is free
    lock.release();
    expect(existsSync(dir)).toBe(false); // it made the folder and nothing else was written
    RunLock.acquire(dir).release();
  });

  it('is released when the function throws, and takes over a stale lock with a warning', async () => {
    const dir = join(work, 'unit-stale');
    await expect(withRunLock(dir, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    writeLock(dir, deadPid);
    writeFileSync(join(dir, 'kept.txt'), 'x');
    const warnings: string[] = [];
    await withRunLock(dir, () => expect(JSON.parse(readFileSync(join(dir, 'commvq.lock'), 'utf8')).pid).toBe(process.pid), { onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([`${dir}: took over a stale lock of pid ${deadPid} (since 2026-01-01T00:00:00.000Z), which is no longer running`]);
    expect(readdirSync(dir)).toEqual(['kept.txt']);
  });

  it('a folder that is a file is one clear error', () => {
    writeFileSync(join(work, 'a-file'), '');
    expect(() => RunLock.acquire(join(work, 'a-file'))).toThrow(/a-file: not a folder/);
  });
});

describe.skipIf(!haveFixture('tiny-llama'))('a second writer on one run folder (tiny-llama, CPU)', () => {
  const model = fixtureDir('tiny-llama');
  const collectArgs = (out: string, data = corpus) => ['collect-kv', '--model', model, '--data', data, '--out', out, '--device', 'cpu', '--tokens', '256', '--seq-len', '64', '--seed', '5'];

  it('collect-kv: refused with one line and exit 1, touching nothing; the first run finishes and a later one resumes', async () => {
    const runDir = join(work, 'collect');
    // the first writer: this process, stopped by Ctrl-C after its first window, still holding the lock
    const first = RunLock.acquire(runDir, { command: 'commvq collect-kv' });
    const abort = new AbortController();
    const stopped = await collectKv({ modelDir: model, corpus, runDir, backend: new CpuBackend(), tokens: 256, seqLen: 64, seed: 5, signal: abort.signal, onProgress: () => abort.abort() });
    expect(stopped.complete).toBe(false);
    const before = snapshot(runDir);

    const r = runCli(collectArgs(runDir));
    expectOneLineError(r, new RegExp(`^commvq: ${runDir}: in use by commvq collect-kv \\(pid ${process.pid} on ${hostname()}, since \\S+\\); wait for it to finish or use another folder$`), { silentStdout: true });
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(snapshot(runDir)).toEqual(before);

    first.release();
    const resumed = runCli([...collectArgs(runDir), '--json']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ complete: true, windowsDone: 4, resumedFrom: stopped.windowsDone });
    expect(existsSync(join(runDir, 'commvq.lock'))).toBe(false);
    expect(runCli(['make-scale', runDir]).status).toBe(0);
  });

  it('a stale lock from a dead process is taken over with a warning', () => {
    const runDir = join(work, 'stale');
    writeLock(runDir, deadPid);
    const r = runCli(collectArgs(runDir));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`warning: ${runDir}: took over a stale lock of pid ${deadPid}`);
    expect(existsSync(join(runDir, 'commvq.lock'))).toBe(false);
  });

  it('train-key, train-value, make-scale, eval niah, pipeline and measure-memory --out refuse a held folder the same way', () => {
    const runDir = join(work, 'held');
    const lock = writeLock(runDir, process.pid);
    const refused = new RegExp(`^commvq: ${runDir}: in use by commvq collect-kv \\(pid ${process.pid} `);
    for (const args of [
      ['train-key', runDir, '--device', 'cpu'],
      ['train-value', runDir, '--model', model, '--data', corpus, '--bits', '1', '--device', 'cpu'],
      ['make-scale', runDir],
      ['eval', 'niah', '--model', model, '--lengths', '200', '--depths', '1', '--out', runDir, '--device', 'cpu'],
      ['pipeline', '--model', model, '--data', corpus, '--out', runDir, '--device', 'cpu'],
      ['measure-memory', '--model', model, '--context', '1k', '--device', 'cpu', '--out', runDir],
    ]) {
      expectOneLineError(runCli(args), refused, { silentStdout: true });
    }
    expect(readdirSync(runDir)).toEqual(['commvq.lock']);
    expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(process.pid);
  });
});

describe.skipIf(!haveFixture('tiny-llama'))('a failed first collect-kv does not block its corrected rerun', () => {
  const model = fixtureDir('tiny-llama');
  const collect = (out: string, data: string) => runCli(['collect-kv', '--model', model, '--data', data, '--out', out, '--device', 'cpu', '--tokens', '128', '--seq-len', '64']);

  it('a mistyped corpus path, then the right one', () => {
    const runDir = join(work, 'typo');
    expectOneLineError(collect(runDir, join(work, 'nope.jsonl')), /nope\.jsonl: corpus not found/);
    expect(existsSync(runDir)).toBe(false);
    const r = collect(runDir, corpus);
    expect(r.status, r.stderr).toBe(0);
  });

  it('a corpus shorter than one window, then a longer one', () => {
    const runDir = join(work, 'short');
    const short = join(work, 'short.jsonl');
    writeFileSync(short, JSON.stringify({ text: 'tiny' }) + '\n');
    expectOneLineError(collect(runDir, short), /short\.jsonl: fewer tokens than one window of 64/);
    expect(existsSync(join(runDir, 'manifest.json'))).toBe(false);
    const r = collect(runDir, corpus);
    expect(r.status, r.stderr).toBe(0);
  });

  it('a manifest an older version left with no window committed is replaced', () => {
    const runDir = join(work, 'old-manifest');
    expect(collect(runDir, corpus).status).toBe(0);
    const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8'));
    writeFileSync(join(runDir, 'manifest.json'), JSON.stringify({ ...manifest, collect: { ...manifest.collect, corpus: join(work, 'nope.jsonl'), windowsDone: 0, files: {}, complete: false } }));
    const r = collect(runDir, corpus);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')).collect).toMatchObject({ corpus, complete: true });
  });
});
