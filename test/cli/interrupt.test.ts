/** onInterrupt: the first SIGINT aborts the signal (the core stops at its next safe point), a second exits 130 at once. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { onInterrupt } from '../../src/cli/interrupt.js';

describe('onInterrupt', () => {
  afterEach(() => vi.restoreAllMocks());

  it('aborts on the first SIGINT and exits 130 on the second; dispose removes the handler', () => {
    const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const interrupt = onInterrupt();
    process.emit('SIGINT');
    expect(interrupt.signal.aborted).toBe(true);
    expect(exit).not.toHaveBeenCalled();
    process.emit('SIGINT');
    expect(exit).toHaveBeenCalledWith(130);
    interrupt.dispose();
    expect(process.listeners('SIGINT')).toHaveLength(0);
  });
});
