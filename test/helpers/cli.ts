/** Runs the built `commvq` command line (bin/run.js → dist/) as a user would, capturing its output. */
import { spawnSync } from 'node:child_process';
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
