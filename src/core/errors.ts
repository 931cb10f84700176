/**
 * Failures the core reports to its callers. Every error a user can cause (a missing file, a corrupt checkpoint, an
 * unsupported architecture) is a CommvqError: one line naming the file and the problem, plus an optional hint.
 * Commands print `message` (and `hint`) and exit non-zero; anything else is a bug and keeps its stack trace.
 */
export class CommvqError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CommvqError';
  }
}

/**
 * A wrong option value, named by the core's option name (`bits`, `seqLen`, `cache`), never by a command-line flag:
 * the command line maps `option` to its flag (src/cli/option-flags.ts), a library caller reads the fields.
 *
 *   throw new OptionError('bits', '3', 'CommVQ bit widths are 1 and 2');
 *   // message 'bits 3: CommVQ bit widths are 1 and 2'; the CLI prints '--bits 3: CommVQ bit widths are 1 and 2'
 */
export class OptionError extends CommvqError {
  constructor(
    /** the option's name in the core's options (camelCase) */
    readonly option: string,
    /** the value as given, or undefined where the problem is not one value (e.g. an option that is missing) */
    readonly value: string | undefined,
    /** what is wrong with it, without the option's name */
    readonly problem: string,
    hint?: string,
  ) {
    super(`${option}${value === undefined ? '' : ` ${value}`}: ${problem}`, hint);
    this.name = 'OptionError';
  }
}

/** Throws a CommvqError unless `condition` holds. */
export function check(condition: unknown, message: string | (() => string), hint?: string): asserts condition {
  if (!condition) throw new CommvqError(typeof message === 'string' ? message : message(), hint);
}
