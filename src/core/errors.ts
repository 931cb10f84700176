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

/** Throws a CommvqError unless `condition` holds. */
export function check(condition: unknown, message: string | (() => string), hint?: string): asserts condition {
  if (!condition) throw new CommvqError(typeof message === 'string' ? message : message(), hint);
}
