/**
 * Checks of a run's kv files against its manifest, so that a truncated or damaged file is refused with one line
 * naming it before anything reads past its end (make-scale, train-key) or appends after a hole (collect-kv's resume).
 * The manifest records each file's committed bytes (schema + whole windows); a finished file adds the end-of-stream
 * marker. Both are cheap: a stat, and on resume one window's bytes, whatever the file's size.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RecordBatchReader } from 'apache-arrow';
import { CommvqError } from '../errors.js';
import { arrowDamaged } from '../io/arrow-read.js';
import { partialPath } from '../io/atomic-write.js';
import { END_OF_STREAM, finishedKvBytes } from './kv-writer.js';
import type { CollectState } from './run-manifest.js';

/** What to do about a damaged kv file: nothing else in the run folder can stand in for its windows. */
export const KV_DAMAGED_HINT = 'collect again into a new RUN_DIR (or delete this one and rerun commvq collect-kv)';

/**
 * Refuses a kv file whose size differs from what the manifest recorded for it.
 *
 *   checkKvFileSize('runs/a/kv/key-L000.arrows', finishedKvBytes(state.files['key-L000.arrows']));
 */
export function checkKvFileSize(path: string, expected: number): void {
  const size = statSync(path).size;
  if (size !== expected) throw new CommvqError(`${path}: truncated or damaged: ${size} bytes where the run manifest records ${expected}`, KV_DAMAGED_HINT);
}

/**
 * Before collect-kv resumes `state`: a finished run's files have their finished sizes; an unfinished run's partial
 * files hold at least their committed bytes (more is a window a crash cut short, which the writer drops), and the
 * last committed window reads back as window `firstWindow + windowsDone − 1` of `seqLen` rows (firstWindow: 0, or
 * where a rank's share of a `commvq launch` job starts).
 */
export function checkResumable(runDir: string, state: CollectState): void {
  for (const [name, committed] of Object.entries(state.files)) {
    const path = join(runDir, 'kv', name);
    if (state.complete) {
      if (!existsSync(path)) throw new CommvqError(`${path}: missing, but the run manifest says collect-kv finished it`, KV_DAMAGED_HINT);
      checkKvFileSize(path, finishedKvBytes(committed));
      continue;
    }
    const partial = partialPath(path);
    if (!existsSync(partial) || state.windowsDone === 0) continue; // the writer reports a missing file itself
    const size = statSync(partial).size;
    if (size < committed) throw new CommvqError(`${partial}: truncated: ${size} bytes where the run manifest records ${committed} committed`, KV_DAMAGED_HINT);
    checkLastWindow(partial, committed, state.windowsDone, state.seqLen, state.firstWindow ?? 0);
  }
}

/**
 * Reads the schema message and the last committed window of a kv stream and checks that it is one record batch of
 * `seqLen` rows from window `windowsDone − 1`. Every window of a run has the same byte length (same rows and
 * columns), so the last one starts at committed − (committed − schema) / windowsDone.
 */
function checkLastWindow(path: string, committed: number, windowsDone: number, seqLen: number, firstWindow: number): void {
  const fd = openSync(path, 'r');
  try {
    const read = (at: number, length: number): Uint8Array => {
      const out = new Uint8Array(length);
      if (readSync(fd, out, 0, length, at) !== length) throw new Error(`short read at byte ${at}`);
      return out;
    };
    const prefix = new DataView(read(0, 8).buffer);
    // an IPC message starts with the continuation marker 0xFFFFFFFF and its metadata length; a schema has no body
    if (prefix.getUint32(0, true) !== 0xffffffff) throw new Error('no schema message at the start');
    const schemaLength = 8 + prefix.getInt32(4, true);
    const windowLength = (committed - schemaLength) / windowsDone;
    if (!Number.isInteger(windowLength) || windowLength <= 0) throw new Error(`${committed} committed bytes are not whole windows`);
    const stream = new Uint8Array(schemaLength + windowLength + END_OF_STREAM.byteLength);
    stream.set(read(0, schemaLength), 0);
    stream.set(read(committed - windowLength, windowLength), schemaLength);
    stream.set(END_OF_STREAM, schemaLength + windowLength);
    const batches = [...RecordBatchReader.from(stream)];
    const last = batches[0];
    const seq = last?.getChild('seq')?.get(0) as number | undefined;
    if (batches.length !== 1 || last!.numRows !== seqLen || seq !== firstWindow + windowsDone - 1) {
      throw new Error(`its last committed window is not window ${firstWindow + windowsDone - 1} of ${seqLen} tokens`);
    }
  } catch (err) {
    throw arrowDamaged(path, err, KV_DAMAGED_HINT);
  } finally {
    closeSync(fd);
  }
}
