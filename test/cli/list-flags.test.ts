/**
 * The comma-list flags shared by commands (src/cli/list-flags.ts): bit widths (train-key, train-value,
 * measure-memory, pipeline), context lengths with k/m suffixes (measure-memory --context, pipeline
 * --memory-context), batches and the device size; bad values name themselves.
 */
import { describe, expect, it } from 'vitest';
import { parseBatchList, parseBitsList, parseContextList } from '../../src/cli/list-flags.js';
import { OptionError } from '../../src/core/errors.js';

describe('list flags', () => {
  it('reads bit widths, keeping their order and dropping repeats; anything else gets the one bits message', () => {
    expect(parseBitsList('1')).toEqual([1]);
    expect(parseBitsList('2, 1,2')).toEqual([2, 1]);
    for (const bad of ['3', '1,3', '', '1,', 'one', '1.0']) {
      expect(() => parseBitsList(bad)).toThrow(new OptionError('bits', bad, 'CommVQ bit widths are 1 and 2'));
    }
    expect(() => parseBitsList('4')).toThrow('bits 4: CommVQ bit widths are 1 and 2');
  });

  it('reads contexts with k = 1024 and m = 1024², plain numbers, and drops repeats', () => {
    expect(parseContextList('8k,32k,128k')).toEqual([8192, 32768, 131072]);
    expect(parseContextList('20000, 8K,1m,8k')).toEqual([20000, 8192, 1048576]);
    expect(parseContextList('1.5k')).toEqual([1536]);
    // pipeline --memory-context: the same parser under its own option name
    expect(() => parseContextList('8q', 'memoryContexts')).toThrow("memoryContexts 8q: '8q' is not a positive whole number, e.g. 8k or 32768");
  });

  it.each(['8q', '0', '', '-1', '0.3k', '8k,,32k'])('refuses the context list %j with a message naming the bad part', (text) => {
    expect(() => parseContextList(text)).toThrow(OptionError);
    expect(() => parseContextList(text)).toThrow(/^context .*is not a positive whole number/);
  });

  it('reads batches (the device size is a number flag: test/cli/number-option.test.ts)', () => {
    expect(parseBatchList('1,8,128')).toEqual([1, 8, 128]);
    expect(() => parseBatchList('1,0')).toThrow("batch 1,0: '0' is not a positive whole number");
    expect(() => parseBatchList('2.5')).toThrow(/^batch 2\.5/);
  });
});
