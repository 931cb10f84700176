/** The one numeric-option check (core/options/number-option.ts) and the one-line form of oclif's parse errors. */
import { describe, expect, it } from 'vitest';
import { parseErrorLine } from '../../src/cli/parse-error.js';
import { OptionError } from '../../src/core/errors.js';
import { parseNumberOption } from '../../src/core/options/number-option.js';

function problem(text: string, rule: Parameters<typeof parseNumberOption>[2]): string | undefined {
  try {
    parseNumberOption('lr', text, rule);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(OptionError);
    return (err as OptionError).problem;
  }
}

describe('parseNumberOption', () => {
  it('reads plain decimals and exponents', () => {
    expect(parseNumberOption('lr', '1e-3', { above: 0, max: 1 })).toBe(0.001);
    expect(parseNumberOption('steps', '12', { integer: true, min: 1 })).toBe(12);
    expect(parseNumberOption('x', '.5')).toBe(0.5);
  });

  it('refuses what Number() would let through', () => {
    for (const t of ['NaN', 'abc', '', ' ', '0x10', '1_000', 'Infinity', '-Infinity', '1e']) expect(problem(t, {})).toBe('not a number');
    expect(problem('1e400', {})).toBe('not a finite number');
  });

  it('checks whole numbers and ranges', () => {
    expect(problem('1.5', { integer: true })).toBe('not a whole number');
    expect(problem('1e20', { integer: true })).toBe('too large');
    expect(problem('0', { above: 0 })).toBe('must be above 0');
    expect(problem('0', { min: 1 })).toBe('must be at least 1');
    expect(problem('2', { max: 1 })).toBe('must be at most 1');
  });

  it('names the option and quotes the text', () => {
    expect(() => parseNumberOption('seqLen', 'x')).toThrow('seqLen x: not a number');
  });
});

describe('parseErrorLine', () => {
  it('joins oclif’s lines and drops its header and footer', () => {
    expect(parseErrorLine('Parsing --seq-len \n\tExpected an integer greater than or equal to 1 but received: 0\nSee more help with --help')).toBe(
      'Parsing --seq-len: Expected an integer greater than or equal to 1 but received: 0',
    );
    expect(parseErrorLine('The following error occurred:\n  Missing required flag out\nSee more help with --help')).toBe('Missing required flag out');
    expect(parseErrorLine('The following errors occurred:\n  Missing required flag out\n  Missing required flag data\nSee more help with --help')).toBe(
      'Missing required flag out; Missing required flag data',
    );
    expect(parseErrorLine('Missing 1 required arg:\nrunDir  run folder written by collect-kv\nSee more help with --help')).toBe('Missing 1 required arg: runDir run folder written by collect-kv');
  });
});

describe('the library takes the same rule', () => {
  it('trainValue refuses a bad lr before it reads or writes anything', async () => {
    const { trainValue } = await import('../../src/core/values/train-value.js');
    const options = { runDir: '/nonexistent/run', modelDir: '/nonexistent/model', corpus: 'x', bits: 1, steps: 1 } as Parameters<typeof trainValue>[0];
    await expect(trainValue({ ...options, lr: Number.NaN })).rejects.toThrow('lr NaN: not a number');
    await expect(trainValue({ ...options, lr: -1 })).rejects.toThrow('lr -1: must be above 0');
  });
});
