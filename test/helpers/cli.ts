/** Runs the built `commvq` command line (bin/run.js → dist/) as a user would, capturing its output. */
import { spawn, spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'run.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A failed command as users must see it: exit 1, one `commvq:` line on stderr naming the problem (matching
 * `pattern`), at most a hint line after it, no stack trace; with `silentStdout`, nothing on stdout.
 */
export function expectOneLineError(r: CliResult, pattern: RegExp, o: { silentStdout?: boolean } = {}): void {
  expect(r.status, r.stdout + r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines[0]).toMatch(/^commvq: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(lines.length).toBeLessThanOrEqual(2);
  expect(lines.slice(1).every((l) => l.startsWith('  hint: '))).toBe(true);
  if (o.silentStdout) expect(r.stdout).toBe('');
}

/**
 * Runs the command line, sends SIGINT once `ready()` holds (polled every 50 ms) and waits for the exit: what a user
 * pressing Ctrl-C sees, plus how long the process took to stop after the signal.
 *
 *   const r = await interruptCli(['train-value', ...], () => existsSync(checkpoint));  // r.status 130, r.stopSeconds
 */
export async function interruptCli(args: string[], ready: () => boolean, o: { timeoutMs?: number } = {}): Promise<CliResult & { stopSeconds: number }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'run.js'), ...args], { env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let sentAt = 0;
  const poll = setInterval(() => {
    if (sentAt === 0 && ready()) {
      sentAt = performance.now();
      child.kill('SIGINT');
    }
  }, 50);
  const kill = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearInterval(poll);
  clearTimeout(kill);
  return { status, stdout, stderr, stopSeconds: sentAt === 0 ? NaN : (performance.now() - sentAt) / 1000 };
}
