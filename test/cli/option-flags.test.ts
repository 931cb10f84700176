/**
 * How the command line names a wrong core option (src/cli/option-flags.ts): the command's own table, the shared
 * spellings, kebab-case where the command has that flag, the core name otherwise; the value typed for the flag
 * where the core gave none.
 */
import { describe, expect, it } from 'vitest';
import { flagFor, optionErrorLine } from '../../src/cli/option-flags.js';
import { OptionError } from '../../src/core/errors.js';

const flags = { 'seq-len': {}, 'max-prompt-tokens': {}, cache: {}, data: {} };

describe('option → flag', () => {
  it('maps by the command table, the shared table, then kebab-case where the flag exists', () => {
    expect(flagFor('seqLen', flags)).toBe('--seq-len');
    expect(flagFor('maxPromptTokens', flags)).toBe('--max-prompt-tokens');
    expect(flagFor('dataDir', flags)).toBe('--data');
    expect(flagFor('corpus', flags)).toBe('--data');
    expect(flagFor('deviceBytes', {})).toBe('--device-memory');
    expect(flagFor('memoryContexts', flags, { memoryContexts: '--memory-context' })).toBe('--memory-context');
    expect(flagFor('window', flags)).toBe('window'); // no such flag: the core name
  });

  it('prints `--flag VALUE: problem`, taking the typed value where the core had none', () => {
    expect(optionErrorLine(new OptionError('seqLen', '0', 'must be positive'), flags, [])).toBe('--seq-len 0: must be positive');
    const noValue = new OptionError('cache', undefined, 'commvq needs codebooks');
    expect(optionErrorLine(noValue, flags, ['--model', 'm', '--cache', 'commvq'])).toBe('--cache commvq: commvq needs codebooks');
    expect(optionErrorLine(noValue, flags, ['--cache=commvq'])).toBe('--cache commvq: commvq needs codebooks');
    expect(optionErrorLine(noValue, flags, [])).toBe('--cache: commvq needs codebooks');
  });
});
