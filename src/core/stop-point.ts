/**
 * Where a long stage may stop. The training loops are synchronous between awaits, so a Ctrl-C handler (which aborts
 * the stage's signal) only runs when they hand the event loop a turn: `stopPoint` does that (a macrotask, so signal
 * handlers and I/O callbacks run, not just promise callbacks) and throws `Interrupted` when the signal has aborted.
 * The stage that owns the loop catches it, keeps its resumable state and returns an interrupted outcome.
 *
 *   for (let s = 0; s < steps; s++) { step(s); await stopPoint(signal); }
 */
export class Interrupted extends Error {
  constructor() {
    super('interrupted');
    this.name = 'Interrupted';
  }
}

/** One turn of the event loop: pending signal handlers and I/O callbacks run before this resolves. */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Yields to the event loop (only when there is a signal to watch) and throws `Interrupted` once it has aborted. */
export async function stopPoint(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await yieldToEvents();
  if (signal.aborted) throw new Interrupted();
}
