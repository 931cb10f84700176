/**
 * What a comparison's caches are called and where they may run: the --cache text a spec writes back (parsing it
 * gives the spec again), the folder names (paths left out, collisions numbered, the same cache twice refused), and
 * the one-line refusal of the caches a GPU cannot run yet.
 */
import { describe, expect, it } from 'vitest';
import { parseCacheList } from '../../../src/cli/cache-flag.js';
import { checkCachesOnDevice, cacheRunsOn } from '../../../src/core/cache-device.js';
import { cacheFolderName, cacheSpecText } from '../../../src/core/cache-spec.js';
import { comparedCaches } from '../../../src/core/eval/run/compare.js';

describe('comparison names', () => {
  const list = 'dense,kivi:bits=2,group=32,int4,int2:group=32,residual=64,fp8,commvq:bits=2,run=runs/a,prefill=strict,commvq:key=k.arrow,value=v.arrow,compress=keys';

  it('cacheSpecText writes the --cache grammar back: parsing it gives the same specs', () => {
    const specs = parseCacheList(list);
    const texts = specs.map(cacheSpecText);
    expect(texts).toEqual(['dense', 'kivi:bits=2,group=32', 'int4', 'int2:group=32,residual=64', 'fp8', 'commvq:run=runs/a,bits=2,prefill=strict', 'commvq:key=k.arrow,value=v.arrow,compress=keys']);
    expect(parseCacheList(texts.join(','))).toEqual(specs);
  });

  it('folder names: the kind and its options without paths; names two caches share are numbered; a cache twice is refused', () => {
    const specs = parseCacheList(list);
    expect(specs.map(cacheFolderName)).toEqual(['dense', 'kivi-bits2-group32', 'int4', 'int2-group32-residual64', 'fp8', 'commvq-bits2-prefill-strict', 'commvq-compress-keys']);
    const two = parseCacheList('commvq:bits=2,run=a,commvq:bits=2,run=b,commvq:bits=2,run=c');
    expect(comparedCaches(two).map((c) => c.name)).toEqual(['commvq-bits2', 'commvq-bits2-2', 'commvq-bits2-3']);
    expect(comparedCaches(two.slice(0, 2), ['x', 'y']).map((c) => c.name)).toEqual(['x', 'y']);
    expect(() => comparedCaches(parseCacheList('int4,fp8,int4'))).toThrow(/^cache: int4 is given twice$/);
  });

  it('the caches a GPU cannot run yet (the CommVQ ablations) are refused in one line naming each', () => {
    const specs = parseCacheList(list);
    // the peer caches have their device twins; the CommVQ ablations do not yet
    expect(specs.map((s) => cacheRunsOn(s, 'cuda:0'))).toEqual([true, true, true, true, true, true, false]);
    expect(specs.every((s) => cacheRunsOn(s, 'cpu'))).toBe(true);
    expect(() => checkCachesOnDevice(specs, 'cpu')).not.toThrow();
    expect(() => checkCachesOnDevice(specs.slice(0, 6), 'cuda:0')).not.toThrow();
    expect(() => checkCachesOnDevice(specs, 'cuda:1')).toThrow(/^cache: commvq:key=k\.arrow,value=v\.arrow,compress=keys runs only on the CPU reference so far, not on cuda:1$/);
    const two = parseCacheList('dense,commvq:bits=1,run=r,compress=keys,commvq:bits=1,run=r,compress=values');
    expect(() => checkCachesOnDevice(two, 'cuda:0')).toThrow(/^cache: commvq:run=r,bits=1,compress=keys, commvq:run=r,bits=1,compress=values run only on the CPU reference so far, not on cuda:0$/);
  });
});
