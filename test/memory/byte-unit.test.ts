/** byteUnit and formatBytes: the unit a count fills at least once, at every boundary. */
import { describe, expect, it } from 'vitest';
import { byteUnit, formatBytes } from '../../src/core/memory/byte-unit.js';

describe('byte units', () => {
  it('picks the largest unit the count fills', () => {
    expect([0, 1023, 1024, 2 ** 20 - 1, 2 ** 20, 80 * 2 ** 30, 2 ** 41].map((n) => byteUnit(n).name)).toEqual(['B', 'B', 'KiB', 'KiB', 'MiB', 'GiB', 'TiB']);
  });

  it('formats with the summary’s decimals', () => {
    expect([512, 1536, 3 * 2 ** 20, 80 * 2 ** 30].map(formatBytes)).toEqual(['512 B', '1.5 KiB', '3.00 MiB', '80.00 GiB']);
  });
});
