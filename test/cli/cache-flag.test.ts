/**
 * The `--cache` grammar (src/cli/cache-flag.ts): one cache or a comma list where a token with `=` is an option of the
 * cache before it; every option of CacheSpec by its name; and what it refuses, each as an OptionError on `cache`
 * quoting the whole value.
 */
import { describe, expect, it } from 'vitest';
import { parseCacheFlag, parseCacheList, withBits } from '../../src/cli/cache-flag.js';
import { checkCacheSpec } from '../../src/core/cache-spec.js';
import { BITS_PROBLEM } from '../../src/core/commvq/geometry.js';
import { OptionError } from '../../src/core/errors.js';

/** The OptionError a parse throws (the test fails if it throws none, or another error). */
function refusal(parse: () => unknown): OptionError {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(OptionError);
    return err as OptionError;
  }
  throw new Error('expected the value to be refused');
}

describe('--cache: one cache', () => {
  it('reads dense, with an optional chunk', () => {
    expect(parseCacheFlag('dense')).toEqual({ kind: 'dense' });
    expect(parseCacheFlag('dense:chunk=4096')).toEqual({ kind: 'dense', chunk: 4096 });
  });

  it('reads commvq from a run folder by bit width, or from two files, with every option', () => {
    expect(parseCacheFlag('commvq:bits=1,run=runs/a')).toEqual({ kind: 'commvq', bits: 1, run: 'runs/a' });
    expect(parseCacheFlag('commvq:key=K.arrow,value=V.arrow,prefill=strict,encoding=gumbel,seed=7,chunk=4096')).toEqual({
      kind: 'commvq', key: 'K.arrow', value: 'V.arrow', prefill: 'strict', encoding: 'gumbel', seed: 7, chunk: 4096,
    });
    // the ablations (issue 18): which half is in codes
    expect(parseCacheFlag('commvq:bits=1,run=runs/a,compress=keys')).toEqual({ kind: 'commvq', bits: 1, run: 'runs/a', compress: 'keys' });
    expect(parseCacheFlag('commvq:bits=1,run=runs/a,compress=values')).toMatchObject({ compress: 'values' });
    expect(parseCacheFlag('commvq:bits=1,run=runs/a,compress=both')).toMatchObject({ compress: 'both' });
    // a path may hold ':' after the first one
    expect(parseCacheFlag('commvq:key=C:/k.arrow,value=C:/v.arrow')).toMatchObject({ key: 'C:/k.arrow', value: 'C:/v.arrow' });
  });

  it('reads int4 and int2 with HF QuantizedCache options, and fp8', () => {
    expect(parseCacheFlag('int4')).toEqual({ kind: 'int4' });
    expect(parseCacheFlag('int2:group=32,residual=64')).toEqual({ kind: 'int2', group: 32, residual: 64 });
    expect(parseCacheFlag('int4:residual=0')).toEqual({ kind: 'int4', residual: 0 });
    expect(parseCacheFlag('fp8')).toEqual({ kind: 'fp8' });
    expect(parseCacheList('dense,int4:group=32,fp8')).toEqual([{ kind: 'dense' }, { kind: 'int4', group: 32 }, { kind: 'fp8' }]);
  });

  it('refuses a list where one cache is run', () => {
    expect(refusal(() => parseCacheFlag('dense,commvq:bits=1,run=r')).message).toBe('cache dense,commvq:bits=1,run=r: one cache, not 2: this command runs one');
  });
});

describe('--cache: a list of caches', () => {
  it('starts a new cache at each token without =', () => {
    expect(parseCacheList('dense,commvq:bits=1,commvq:bits=2')).toEqual([{ kind: 'dense' }, { kind: 'commvq', bits: 1 }, { kind: 'commvq', bits: 2 }]);
    expect(parseCacheList('commvq:key=k,value=v,dense:chunk=8')).toEqual([{ kind: 'commvq', key: 'k', value: 'v' }, { kind: 'dense', chunk: 8 }]);
    // measure-memory's two modes of one width: two caches
    expect(parseCacheList('commvq:bits=1,prefill=faithful,commvq:bits=1,prefill=strict')).toEqual([
      { kind: 'commvq', bits: 1, prefill: 'faithful' }, { kind: 'commvq', bits: 1, prefill: 'strict' },
    ]);
  });

  it('measure-memory’s --bits gives each commvq without bits or files one cache per width', () => {
    expect(withBits(parseCacheList('dense,commvq,commvq:bits=2,commvq:key=k,value=v'), [1, 2])).toEqual([
      { kind: 'dense' }, { kind: 'commvq', bits: 1 }, { kind: 'commvq', bits: 2 }, { kind: 'commvq', bits: 2 }, { kind: 'commvq', key: 'k', value: 'v' },
    ]);
  });
});

describe('--cache refuses, naming the whole value', () => {
  it.each([
    ['h2o', "unknown cache kind 'h2o'"],
    ['dense,h2o:bits=1', "unknown cache kind 'h2o'"],
    ['commvq:bits=3', BITS_PROBLEM],
    ['commvq:bits=two,run=r', 'bits=two: not a whole number'],
    ['dense:bits=2', "dense takes no option 'bits' (it takes chunk)"],
    ['commvq:window=64', "commvq takes no option 'window' (it takes key, value, run, bits, prefill, encoding, seed, chunk, compress)"],
    ['commvq:bits=1,run=r,compress=neither', 'compress is keys or values or both, not neither'],
    ['dense:compress=keys', "dense takes no option 'compress' (it takes chunk)"],
    ['commvq:bits', "'bits' is not OPTION=VALUE"],
    ['commvq:key=', 'key= has no value'],
    ['commvq:bits=1,bits=2,run=r', 'bits= is given twice'],
    ['bits=1,commvq', "'bits=1' comes before any cache kind (dense, commvq, kivi, int4, int2, fp8)"],
    ['commvq:key=k', 'key= and value= go together'],
    ['commvq:key=k,value=v,run=r,bits=1', 'give the codebooks as key= and value=, or as run= and bits=, not both'],
    ['commvq:run=r', 'run= needs bits=1 or bits=2: which codebooks of the run'],
    ['commvq:bits=1,run=r,prefill=lazy', 'prefill is faithful or strict, not lazy'],
    ['commvq:bits=1,run=r,encoding=topk', 'encoding is argmax or gumbel, not topk'],
    // numbers: the one rule of number-option.ts, its words, under the option's name and text
    ['commvq:bits=1,run=r,seed=x', 'seed=x: not a whole number'],
    ['commvq:bits=1,run=r,seed=-1', 'seed=-1: must be at least 0'],
    ['commvq:bits=1,run=r,seed=1e400', 'seed=1e400: not a finite number'],
    ['commvq:bits=1,run=r,seed=0x10', 'seed=0x10: not a whole number'],
    ['commvq:bits=1,run=r,chunk=4096', 'chunk needs prefill=strict'],
    ['dense:chunk=0', 'chunk=0: must be at least 1'],
    ['dense:chunk=2.5', 'chunk=2.5: not a whole number'],
    ['dense:chunk=NaN', 'chunk=NaN: not a whole number'],
    // the peer caches: HF's group sizes, a whole residual, fp8 without options
    ['int4:group=48', 'group=48: groups are 32 or 64 channels'],
    ['int2:group=0', 'group=0: must be at least 1'],
    ['int4:residual=-1', 'residual=-1: must be at least 0'],
    ['int4:residual=1.5', 'residual=1.5: not a whole number'],
    ['int4:bits=2', "int4 takes no option 'bits' (it takes group, residual)"],
    ['fp8:group=32', "fp8 takes no option 'group' (it takes none)"],
  ])('%s', (text, problem) => {
    const err = refusal(() => parseCacheList(text));
    expect([err.option, err.value, err.problem]).toEqual(['cache', text, problem]);
  });

  it('a library caller’s spec meets the same number rule and words (checkCacheSpec)', () => {
    expect(() => checkCacheSpec({ kind: 'dense', chunk: 0 })).toThrow(new OptionError('cache', undefined, 'chunk=0: must be at least 1'));
    expect(() => checkCacheSpec({ kind: 'commvq', bits: 1, run: 'r', seed: 1.5 })).toThrow(new OptionError('cache', undefined, 'seed=1.5: not a whole number'));
  });

  it('keeps the hint of the problem (faithful prefill runs the prompt in one forward)', () => {
    expect(refusal(() => parseCacheFlag('commvq:bits=1,run=r,chunk=8')).hint).toMatch(/faithful prefill attends exactly over the whole prompt/);
    expect(refusal(() => parseCacheFlag('h2o')).hint).toBe('kinds: dense, commvq, kivi, int4, int2, fp8');
  });
});

describe('--cache kivi (issue 18)', () => {
  it('reads bits, group and residual; group and residual default to the paper’s 32 and 128 at build time', () => {
    expect(parseCacheFlag('kivi:bits=2')).toEqual({ kind: 'kivi', bits: 2 });
    expect(parseCacheFlag('kivi:bits=1,group=16,residual=64')).toEqual({ kind: 'kivi', bits: 1, group: 16, residual: 64 });
    expect(parseCacheList('dense,kivi:bits=2,kivi:bits=1')).toEqual([{ kind: 'dense' }, { kind: 'kivi', bits: 2 }, { kind: 'kivi', bits: 1 }]);
  });

  it.each([
    ['kivi:bits=3', "bits=3: KIVI's bit widths are 2 and 1"],
    ['kivi:bits=4', "bits=4: KIVI's bit widths are 2 and 1"],
    ['kivi', 'kivi needs bits=2 or bits=1'],
    // bits is read by the one number rule for every kind, then each kind names its widths
    ['kivi:bits=1.5', 'bits=1.5: not a whole number'],
    ['kivi:bits=x', 'bits=x: not a whole number'],
    ['kivi:residual=20,group=32', 'residual=20 is not a multiple of group=32'],
    ['kivi:bits=2,residual=100', 'residual=100 is not a multiple of group=32'], // the default group
    ['kivi:bits=2,group=0', 'group=0: must be at least 1'],
    ['kivi:bits=2,residual=1.5', 'residual=1.5: not a whole number'],
    ['kivi:bits=2,chunk=8', "kivi takes no option 'chunk' (it takes bits, group, residual)"],
  ])('refuses %s in one line', (text, problem) => {
    const err = refusal(() => parseCacheFlag(text));
    expect([err.option, err.value, err.problem]).toEqual(['cache', text, problem]);
    expect(err.message).not.toContain('\n');
  });

  it('checks a library caller’s spec the same way', () => {
    expect(() => checkCacheSpec({ kind: 'kivi', bits: 2, group: 32, residual: 20 })).toThrow('cache: residual=20 is not a multiple of group=32');
  });
});
