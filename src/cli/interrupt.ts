/**
 * Ctrl-C for long runs: the first SIGINT aborts the returned signal, so the core stops after its current step and
 * leaves resumable state; a second one exits at once with code 130 (through process.exit, so 'exit' handlers such as
 * the run lock's release still run). `dispose()` removes the handler.
 *
 *   const interrupt = onInterrupt(); try { await run({ signal: interrupt.signal }); } finally { interrupt.dispose(); }
 */
export function onInterrupt(): { signal: AbortSignal; dispose(): void } {
  const abort = new AbortController();
  const handler = () => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', handler);
  return { signal: abort.signal, dispose: () => process.off('SIGINT', handler) };
}
