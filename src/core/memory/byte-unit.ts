/**
 * Byte counts for people: the binary unit (B, KiB, MiB, GiB, TiB) that shows a count as 1 to 1023.99 of it. One rule
 * for the plots' axes and the summaries' numbers, so a demo model's KiB are not drawn on a GiB axis (issue 17, item 10).
 *
 *   byteUnit(3 * 2 ** 20)   // { name: 'MiB', bytes: 1048576 }
 *   formatBytes(1536)       // '1.5 KiB'
 */
export interface ByteUnit {
  name: 'B' | 'KiB' | 'MiB' | 'GiB' | 'TiB';
  bytes: number;
}

const UNITS: readonly ByteUnit[] = [
  { name: 'TiB', bytes: 2 ** 40 },
  { name: 'GiB', bytes: 2 ** 30 },
  { name: 'MiB', bytes: 2 ** 20 },
  { name: 'KiB', bytes: 2 ** 10 },
  { name: 'B', bytes: 1 },
];

/** The largest unit that `n` bytes fill at least once (B for n < 1 KiB, 0 and negatives included). */
export function byteUnit(n: number): ByteUnit {
  return UNITS.find((u) => n >= u.bytes) ?? UNITS[UNITS.length - 1]!;
}

/** `n` bytes in its unit: two decimals from MiB up, one for KiB, whole bytes below. */
export function formatBytes(n: number): string {
  const u = byteUnit(n);
  return u.name === 'B' ? `${n} B` : `${(n / u.bytes).toFixed(u.name === 'KiB' ? 1 : 2)} ${u.name}`;
}
