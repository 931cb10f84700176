import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../errors.js';
import { partialPath } from '../io/atomic-write.js';
import { rendezvousHostSum } from '../parallel/collective.js';
import type { Rendezvous } from '../parallel/rendezvous.js';
import { budgetWindows, collectKv, DEFAULT_SEQ_LEN, collectKvWindows, type CollectKvOptions, type CollectKvSummary } from './collect-kv.js';
import { kvFileName } from './kv-format.js';
import { checkKvFileSize } from './kv-integrity.js';
import { END_OF_STREAM, finishedKvBytes } from './kv-writer.js';
import { RANKS_DIR, rankRunDir, rankWindows, refuseUnmergedRanks } from './rank-runs.js';
import { readManifest, writeManifest, type CollectState, type RunManifest } from './run-manifest.js';

/**
 * collect-kv over the ranks of a `commvq launch` job (`rdzv`: the job's rendezvous, joined): rank r of W collects the
 * contiguous windows r·N/W … (r+1)·N/W − 1 of the run's N into its own run folder (rank-runs.ts), each resumable as
 * a run alone is; once every rank has finished its share, rank 0 concatenates the shares' files in rank order into
 * RUN_DIR/kv (each under `.partial` until whole, then renamed) and writes RUN_DIR/manifest.json. A window's record
 * batch is the same bytes whichever process writes it (its `seq` is its place in the whole run), so the files and the
 * manifest are byte for byte one process's. Contiguous shares, not every W-th window, make the merge a plain copy of
 * byte ranges: no record batch is parsed or moved. A stopped or failed rank means no merge: rerunning the same job
 * continues every share from its last complete window. Call with the same options on every rank.
 *
 *   const rdzv = await Rendezvous.join(distEnv());
 *   const summary = await collectKvOnRanks({ modelDir, corpus, runDir: 'runs/a', backend }, rdzv);  // rank 0 merged
 */
export async function collectKvOnRanks(o: CollectKvOptions, rdzv: Rendezvous): Promise<CollectKvSummary> {
  const { rank, worldSize } = rdzv;
  if (worldSize === 1) return collectKv(o);
  const whole = readManifest(o.runDir)?.collect;
  if (whole?.complete) return collectKv(o); // finished (merged, or by one process): checked and left as it is
  if (whole && whole.windowsDone > 0) {
    throw new CommvqError(`${o.runDir}: collect-kv was started here by one process (${whole.windowsDone}/${whole.windows} windows)`, 'rerun it without commvq launch to continue, or use a new RUN_DIR');
  }
  refuseUnmergedRanks(o.runDir, worldSize);
  const windows = budgetWindows(o);
  const mine = await collectKvWindows({ ...o, runDir: rankRunDir(o.runDir, rank, worldSize) }, rankWindows(windows, rank, worldSize));
  let sums: Float64Array;
  try {
    sums = await rendezvousHostSum(rdzv, Float64Array.of(mine.complete ? 1 : 0, mine.windowsDone, mine.resumedFrom), "the end of every rank's windows");
  } catch (e) {
    throw new CommvqError(`${o.runDir}: not merged: ${(e as Error).message}`, 'rerun the same commvq launch command: every rank continues from its last complete window');
  }
  const [completeRanks, windowsDone, resumedFrom] = [sums[0]!, sums[1]!, sums[2]!];
  const complete = completeRanks === worldSize;
  const seqLen = o.seqLen ?? DEFAULT_SEQ_LEN;
  if (complete && windowsDone === 0 && rank === 0) { // rank 0 alone fails, with the one line a process alone prints
    rmSync(join(o.runDir, RANKS_DIR), { recursive: true, force: true }); // nothing to keep: a corrected rerun starts afresh
    throw new CommvqError(`${o.corpus}: fewer tokens than one window of ${seqLen}`, 'use a larger corpus or shorter windows');
  }
  const summary: CollectKvSummary = {
    runDir: o.runDir,
    windows,
    windowsDone,
    tokensPerLayer: windowsDone * seqLen,
    layers: mine.layers,
    complete,
    shortOfBudget: complete && windowsDone < windows,
    resumedFrom,
    files: mine.layers.flatMap((l) => (['key', 'value'] as const).map((k) => join(o.runDir, 'kv', kvFileName(k, l)))),
  };
  if (complete && rank === 0) mergeRanks(o.runDir, worldSize, windows);
  return summary;
}

/**
 * Rank 0, once every rank has finished its share: each kv file is rank 0's stream up to its last committed window,
 * then every other rank's windows (its stream past the schema message), then the end-of-stream marker; the manifest
 * is rank 0's with the whole run's windows and byte counts. The rank folders go last, so a merge cut short is simply
 * done again by rerunning the job.
 */
function mergeRanks(runDir: string, worldSize: number, windows: number): void {
  const shares = Array.from({ length: worldSize }, (_, r) => {
    const dir = rankRunDir(runDir, r, worldSize);
    const manifest = readManifest(dir);
    if (!manifest?.collect?.complete) throw new CommvqError(`${dir}: rank ${r}'s share is not finished`, 'rerun the same commvq launch command');
    return { dir, manifest: manifest as RunManifest & { collect: CollectState } };
  });
  let windowsDone = 0;
  for (const [r, { dir, manifest }] of shares.entries()) {
    const share = manifest.collect;
    // the corpus ends at one place: a share it did not fill is followed only by empty ones
    if (share.windowsDone > 0 && share.firstWindow !== windowsDone) throw new CommvqError(`${dir}: rank ${r}'s windows start at ${share.firstWindow}, not after the ${windowsDone} of the ranks before it`, 'collect again into a new RUN_DIR');
    windowsDone += share.windowsDone;
  }
  mkdirSync(join(runDir, 'kv'), { recursive: true });
  const first = shares[0]!.manifest;
  const files: Record<string, number> = {};
  for (const name of Object.keys(first.collect.files)) {
    files[name] = concatStreams(shares.map(({ dir, manifest }) => ({ path: join(dir, 'kv', name), committed: manifest.collect.files[name]! })), join(runDir, 'kv', name));
  }
  const { firstWindow: _, ...state } = first.collect;
  writeManifest(runDir, { ...first, collect: { ...state, windows, windowsDone, files, complete: true } });
  rmSync(join(runDir, RANKS_DIR), { recursive: true, force: true });
}

const COPY_CHUNK = 16 << 20;

/**
 * Writes `parts` as one Arrow IPC stream at `path` (under `.partial` until it is whole): the first part's committed
 * bytes, the others' past their schema message (which must equal the first's), the end-of-stream marker. Returns
 * the committed bytes (without the marker), what the manifest records.
 */
function concatStreams(parts: { path: string; committed: number }[], path: string): number {
  const tmp = partialPath(path);
  const out = openSync(tmp, 'w');
  const buffer = Buffer.allocUnsafe(COPY_CHUNK);
  let at = 0;
  let schema: Buffer | undefined;
  try {
    for (const [i, part] of parts.entries()) {
      checkKvFileSize(part.path, finishedKvBytes(part.committed));
      const fd = openSync(part.path, 'r');
      try {
        const head = Buffer.alloc(8);
        readSync(fd, head, 0, 8, 0);
        const schemaBytes = Buffer.alloc(8 + head.readInt32LE(4)); // continuation marker, metadata length, metadata
        readSync(fd, schemaBytes, 0, schemaBytes.byteLength, 0);
        if (!schema) schema = schemaBytes;
        else if (!schema.equals(schemaBytes)) throw new CommvqError(`${part.path}: its schema differs from rank 0's`, 'collect again into a new RUN_DIR');
        for (let from = i === 0 ? 0 : schemaBytes.byteLength; from < part.committed;) {
          const n = readSync(fd, buffer, 0, Math.min(COPY_CHUNK, part.committed - from), from);
          if (n === 0) throw new CommvqError(`${part.path}: ended at byte ${from} of ${part.committed}`);
          for (let w = 0; w < n;) w += writeSync(out, buffer, w, n - w, at + w);
          from += n;
          at += n;
        }
      } finally {
        closeSync(fd);
      }
    }
    writeSync(out, END_OF_STREAM, 0, END_OF_STREAM.byteLength, at);
    fsyncSync(out);
  } finally {
    closeSync(out);
  }
  renameSync(tmp, path);
  return at;
}
