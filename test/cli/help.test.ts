/**
 * `commvq help [COMMAND]` (issue 17, item 10: it did not exist): the same text as `--help` for the root, a topic and
 * a command under a topic; an unknown command is one line and exit 1.
 */
import { describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';

describe('commvq help', () => {
  it('prints what --help prints, for the root, a topic and a command', () => {
    const root = runCli(['help']);
    expect(root.status, root.stderr).toBe(0);
    expect(root.stdout).toMatch(/^COMMANDS$/m);
    expect(root.stdout).toMatch(/^ {2}pipeline /m);
    expect(root.stdout).toBe(runCli(['--help']).stdout);
    expect(runCli(['help', 'eval']).stdout).toBe(runCli(['eval', '--help']).stdout);
    const niah = runCli(['help', 'eval', 'niah']);
    expect(niah.status).toBe(0);
    expect(niah.stdout).toContain('--lengths');
    expect(niah.stdout).toBe(runCli(['eval', 'niah', '--help']).stdout);
  });

  it('an unknown command: one line, exit 1', () => {
    expectOneLineError(runCli(['help', 'nope']), /^commvq: Command nope not found\.$/, { silentStdout: true });
  });
});
