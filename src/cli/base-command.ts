import { Command, Errors } from '@oclif/core';
import { CommvqError, OptionError } from '../core/errors.js';
import { RunLock, withRunLock, type RunLockOptions } from '../core/io/run-lock.js';
import { pngFontNote } from '../core/plot/heatmap-render.js';
import { optionErrorLine } from './option-flags.js';
import { parseErrorLine } from './parse-error.js';

/**
 * What every commvq command shares: `--json` (prints what `run()` returns), and errors printed as one line
 * (`commvq: <file>: <problem>`, then a hint) with exit code 1 — never a stack trace for bad input. oclif's own flag
 * and argument errors are bad input too: printed whole as one line (parse-error.ts), exit 1, not oclif's 2. A wrong option
 * value from the core (OptionError) is printed under the command's flag for it (option-flags.ts; a command whose
 * flags differ from the core's option names lists them in `optionFlags`).
 * Set COMMVQ_DEBUG=1 to see stack traces of unexpected errors.
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true;

  /** core option name → this command's flag, where the general rule (option-flags.ts) does not find it */
  static optionFlags: Readonly<Record<string, string>> = {};

  /** After writing PNG plots: says so on stderr when the machine has no font to draw their text with. */
  notePngFonts(): void {
    const note = pngFontNote();
    if (note) this.logToStderr(`note: ${note}`);
  }

  /**
   * Runs `fn` holding the lock of the folder it writes (core/io/run-lock.ts): a second writer is refused with one
   * line naming the owner; a stale lock's takeover is a warning on stderr. `scope` separates locks that may share a
   * folder (eval shards).
   */
  withRunLock<T>(dir: string, fn: () => Promise<T>, scope?: string): Promise<T> {
    return withRunLock(dir, fn, this.lockOptions(scope));
  }

  /** The lock itself, for a command that releases it in its own `finally`. */
  runLock(dir: string, scope?: string): RunLock {
    return RunLock.acquire(dir, this.lockOptions(scope));
  }

  private lockOptions(scope: string | undefined): RunLockOptions {
    return { scope, command: `commvq ${(this.id ?? '').replaceAll(':', ' ')}`.trim(), onWarning: (m) => this.logToStderr(`warning: ${m}`) };
  }

  override async catch(err: Error): Promise<unknown> {
    if (err instanceof Errors.ExitError || process.env.COMMVQ_DEBUG) return super.catch(err);
    const isOurs = err instanceof CommvqError;
    const isParse = err instanceof Errors.CLIError; // flag and argument errors from oclif's parser
    const message =
      err instanceof OptionError ? this.optionLine(err) // also a numeric flag's, thrown inside oclif's parse (number-flag.ts)
      : isOurs ? err.message
      : isParse ? parseErrorLine(err.message)
      : `internal error: ${err.message} (run with COMMVQ_DEBUG=1 for the stack trace)`;
    const hint = isOurs ? (err as CommvqError).hint : undefined;
    process.exitCode = 1; // every bad input, oclif's parse errors included (README: exit codes)
    if (isParse || err instanceof OptionError) this.parsed = true; // it did parse, and failed: no "did not parse" warning (NODE_ENV=test|development)
    if (this.jsonEnabled()) {
      this.logJson({ error: { message, ...(hint ? { hint } : {}) } });
    } else {
      process.stderr.write(`commvq: ${message.split('\n')[0]}\n${hint ? `  hint: ${hint}\n` : ''}`);
    }
    return undefined;
  }

  private optionLine(err: OptionError): string {
    const command = this.constructor as typeof BaseCommand;
    return optionErrorLine(err, command.flags ?? {}, this.argv, command.optionFlags);
  }
}
