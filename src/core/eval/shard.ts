/**
 * A shard `i/n`: which examples one process handles. An example belongs to shard fnv1a32(id) mod n, so the split
 * depends only on the ids — not on file order, `--limit`, or which other examples exist — and every example is in
 * exactly one shard. Shards are numbered 0..n-1.
 *
 *   const shard = parseShard('1/4');
 *   const mine = examples.filter((e) => inShard(e.id, shard));
 */
import { OptionError } from '../errors.js';

export interface Shard {
  index: number;
  count: number;
}

export const WHOLE: Shard = { index: 0, count: 1 };

export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new OptionError('shard', spec, 'expected i/n, e.g. 0/2');
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new OptionError('shard', spec, 'n must be at least 1');
  if (index >= count) throw new OptionError('shard', spec, 'i must be below n', 'shards are numbered 0..n-1, e.g. 0/2 and 1/2');
  return { index, count };
}

/** 32-bit FNV-1a of the UTF-8 bytes of `s`. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(s)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function inShard(id: string, shard: Shard): boolean {
  return shard.count === 1 || fnv1a32(id) % shard.count === shard.index;
}

/** The examples of one shard, in their original order. */
export function selectShard<T extends { id: string }>(examples: readonly T[], shard: Shard): T[] {
  return examples.filter((e) => inShard(e.id, shard));
}
