import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../errors.js';
import { readManifest } from './run-manifest.js';

/**
 * Where the ranks of a `commvq launch` collect-kv keep their shares of the windows until rank 0 merges them:
 * RUN_DIR/kv-ranks/rank-R-of-W, each a run folder of its own (manifest.json, kv/). Rank 0 removes the folder once
 * the merged files and manifest are in place.
 *
 *   rankRunDir('runs/a', 1, 8)   // 'runs/a/kv-ranks/rank-1-of-8'
 *   rankWindows(10, 1, 4)        // { first: 2, windows: 3 }: ranks get 2, 3, 2, 3 windows
 */
export const RANKS_DIR = 'kv-ranks';

export function rankRunDir(runDir: string, rank: number, worldSize: number): string {
  return join(runDir, RANKS_DIR, `rank-${rank}-of-${worldSize}`);
}

/** Rank `rank`'s contiguous share of `windows` windows, the shares differing by at most one window. */
export function rankWindows(windows: number, rank: number, worldSize: number): { first: number; windows: number } {
  const first = Math.floor((rank * windows) / worldSize);
  return { first, windows: Math.floor(((rank + 1) * windows) / worldSize) - first };
}

/** The world sizes of the rank folders a run folder holds (none: []). */
function rankWorlds(runDir: string): number[] {
  const dir = join(runDir, RANKS_DIR);
  if (!existsSync(dir)) return [];
  const worlds = readdirSync(dir).flatMap((f) => /^rank-\d+-of-(\d+)$/.exec(f)?.[1] ?? []).map(Number);
  return [...new Set(worlds)].sort((a, b) => a - b);
}

/**
 * Refuses to collect into a run folder that holds the unmerged shares of a launch job of another size (a process
 * alone is world size 1): its windows would be collected again, or mixed with shares cut at other places. A run
 * whose merged manifest says complete is what it says (its rank folders are left-overs).
 */
export function refuseUnmergedRanks(runDir: string, worldSize = 1): void {
  const other = rankWorlds(runDir).find((w) => w !== worldSize);
  if (other === undefined || readManifest(runDir)?.collect?.complete) return;
  throw new CommvqError(
    `${runDir}: holds the unmerged windows of a commvq launch collect-kv of ${other} ranks (${RANKS_DIR}/)`,
    `rerun the same collect-kv under commvq launch with ${other} GPUs to finish it, or use a new RUN_DIR`,
  );
}
