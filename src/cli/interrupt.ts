/**
 * Ctrl-C for long runs: the first SIGINT aborts the returned signal, so the core stops after its current step and
 * leaves resumable state; the handler is removed by `dispose()`.
 *
 *   const interrupt = onInterrupt(); try { await run({ signal: interrupt.signal }); } finally { interrupt.dispose(); }
 */
export function onInterrupt(): { signal: AbortSignal; dispose(): void } {
  const abort = new AbortController();
  const handler = () => abort.abort();
  process.once('SIGINT', handler);
  return { signal: abort.signal, dispose: () => process.off('SIGINT', handler) };
}
