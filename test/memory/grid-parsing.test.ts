/** The grid flags of measure-memory: context lists with k/m suffixes, batches, caches and bits; bad values name themselves. */
import { describe, expect, it } from 'vitest';
import { CommvqError } from '../../src/core/errors.js';
import { cacheLabel, checkDeviceMemory, contextLabel, GiB, gridPoints, parseBatchList, parseBitsList, parseCacheList, parseContextList, parseDeviceMemory } from '../../src/core/memory/measure-memory.js';

describe('measure-memory grid parsing', () => {
  it('reads contexts with k = 1024 and m = 1024², plain numbers, and drops repeats', () => {
    expect(parseContextList('8k,32k,128k')).toEqual([8192, 32768, 131072]);
    expect(parseContextList('20000, 8K,1m,8k')).toEqual([20000, 8192, 1048576]);
    expect(parseContextList('1.5k')).toEqual([1536]);
  });

  it.each(['8q', '0', '', '-1', '0.3k', '8k,,32k'])('refuses the context list %j with a message naming the bad part', (text) => {
    expect(() => parseContextList(text)).toThrow(CommvqError);
    expect(() => parseContextList(text)).toThrow(/^--context .*is not a positive whole number/);
  });

  it('reads batches, caches and bits, refusing anything else', () => {
    expect(parseBatchList('1,8,128')).toEqual([1, 8, 128]);
    expect(() => parseBatchList('1,0')).toThrow(/--batch 1,0: '0' is not/);
    expect(() => parseBatchList('2.5')).toThrow(/--batch/);
    expect(parseCacheList('dense,commvq')).toEqual(['dense', 'commvq']);
    expect(() => parseCacheList('kivi')).toThrow("--cache kivi: 'kivi' is not dense or commvq");
    expect(parseBitsList('2,1')).toEqual([2, 1]);
    expect(() => parseBitsList('4')).toThrow("--bits 4: '4' is not 1 or 2");
  });

  it('labels contexts and caches as the table prints them', () => {
    expect([8192, 131072, 20000, 2097152].map(contextLabel)).toEqual(['8K', '128K', '20000', '2M']);
    expect(cacheLabel({ cache: 'dense' })).toBe('dense');
    expect(cacheLabel({ cache: 'commvq', bits: 2 })).toBe('commvq-2bit');
  });

  it('spans the grid caches outermost, then contexts, then batches', () => {
    const points = gridPoints([{ cache: 'dense' }, { cache: 'commvq', bits: 1 }], [8192, 32768], [1, 8]);
    expect(points).toHaveLength(8);
    expect(points[0]).toEqual({ cache: 'dense', context: 8192, batch: 1 });
    expect(points[3]).toEqual({ cache: 'dense', context: 32768, batch: 8 });
    expect(points[4]).toEqual({ cache: 'commvq', bits: 1, context: 8192, batch: 1 });
  });

  it('reads --device-memory in GiB and refuses a card larger than the one that runs', () => {
    expect(parseDeviceMemory('79.65')).toBe(79.65 * GiB);
    expect(parseDeviceMemory('24')).toBe(24 * GiB);
    for (const bad of ['0', '-8', '80GB', '']) expect(() => parseDeviceMemory(bad)).toThrow(CommvqError);
    expect(() => checkDeviceMemory(79.65 * GiB, 140 * GiB, 'NVIDIA H200')).not.toThrow();
    expect(() => checkDeviceMemory(200 * GiB, 140 * GiB, 'NVIDIA H200')).toThrow(/--device-memory 200\.00 GiB is more than NVIDIA H200 has \(140\.00 GiB\)/);
  });
});
