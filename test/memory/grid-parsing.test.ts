/** The measure-memory grid: labels of contexts and caches, the points it spans, and the device size check. (Its flags' lists: test/cli/list-flags.) */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../src/core/errors.js';
import { cacheLabel, checkDeviceMemory, contextLabel, GiB, gridPoints } from '../../src/core/memory/measure-memory.js';

describe('measure-memory grid', () => {
  it('labels contexts and caches as the table prints them', () => {
    expect([8192, 131072, 20000, 2097152].map(contextLabel)).toEqual(['8K', '128K', '20000', '2M']);
    expect(cacheLabel({ cache: 'dense' })).toBe('dense');
    expect(cacheLabel({ cache: 'commvq', bits: 2 })).toBe('commvq-2bit');
    // the default prefill mode (faithful) goes unnamed, the other is named
    expect(cacheLabel({ cache: 'commvq', bits: 1, prefillMode: 'faithful' })).toBe('commvq-1bit');
    expect(cacheLabel({ cache: 'commvq', bits: 1, prefillMode: 'strict' })).toBe('commvq-1bit-strict');
    expect(cacheLabel({ cache: 'dense', prefillMode: 'strict' })).toBe('dense');
  });

  it('spans the grid caches outermost, then contexts, then batches', () => {
    const points = gridPoints([{ cache: 'dense' }, { cache: 'commvq', bits: 1 }], [8192, 32768], [1, 8]);
    expect(points).toHaveLength(8);
    expect(points[0]).toEqual({ cache: 'dense', context: 8192, batch: 1 });
    expect(points[3]).toEqual({ cache: 'dense', context: 32768, batch: 8 });
    expect(points[4]).toEqual({ cache: 'commvq', bits: 1, context: 8192, batch: 1 });
    const modes = gridPoints([{ cache: 'commvq', bits: 1, prefillMode: 'faithful' }, { cache: 'commvq', bits: 1, prefillMode: 'strict' }], [8192], [1]);
    expect(modes).toEqual([{ cache: 'commvq', bits: 1, prefillMode: 'faithful', context: 8192, batch: 1 }, { cache: 'commvq', bits: 1, prefillMode: 'strict', context: 8192, batch: 1 }]);
  });

  it('behaves as a smaller card, takes the card’s nominal size as the card itself, and refuses a larger card', () => {
    expect(checkDeviceMemory(79.65 * GiB, 140 * GiB, 'NVIDIA H200')).toBe(79.65 * GiB);
    expect(() => checkDeviceMemory(200 * GiB, 140 * GiB, 'NVIDIA H200')).toThrow('deviceBytes 200.00 GiB: more than NVIDIA H200 has (140.00 GiB by its driver; up to 142.80 GiB is taken as the card itself)');
    // an H100 80GB's driver reports 79.18 GiB: the README's 79.65 (nvidia-smi) and the name's 80 are the card, measured at 79.18
    const h100 = 79.18 * GiB;
    expect(checkDeviceMemory(79.65 * GiB, h100, 'NVIDIA H100 80GB HBM3')).toBe(h100);
    expect(checkDeviceMemory(80 * GiB, h100, 'NVIDIA H100 80GB HBM3')).toBe(h100);
    expect(checkDeviceMemory(h100, h100, 'NVIDIA H100 80GB HBM3')).toBe(h100);
    expect(checkDeviceMemory(24 * GiB, h100, 'NVIDIA H100 80GB HBM3')).toBe(24 * GiB);
    expect(() => checkDeviceMemory(81 * GiB, h100, 'NVIDIA H100 80GB HBM3')).toThrow(
      new OptionError('deviceBytes', '81.00 GiB', 'more than NVIDIA H100 80GB HBM3 has (79.18 GiB by its driver; up to 80.76 GiB is taken as the card itself)', 'give a size up to the card’s, or leave it out'),
    );
  });
});
