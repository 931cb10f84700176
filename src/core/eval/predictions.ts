/**
 * Per-example prediction files: one JSON line per finished example, appended as soon as it is done, keyed by
 * (task, id). A rerun reads the file and skips what is there (resume without duplicates); a line cut short by a
 * crash is dropped and the file repaired before appending. `mergePredictions` combines shard files: the same
 * (task, id) twice with the same prediction is kept once, with different predictions it is an error.
 *
 *   const log = PredictionLog.open('out/qasper.shard-0-of-2.jsonl');
 *   for (const ex of examples) if (!log.has('qasper', ex.id)) log.append({ id: ex.id, index: ex.index, task: 'qasper', pred });
 *   const merged = mergePredictionFiles(['out/qasper.shard-0-of-2.jsonl', 'out/qasper.shard-1-of-2.jsonl']);
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { parseJsonl, RecordReader } from './jsonl.js';

export interface PredictionRecord {
  /** the example's id in its dataset (LongBench `_id`, InfiniteBench `id`, NIAH `len_L_depth_d`) */
  id: string;
  /** position in the dataset file: the order of merged output */
  index: number;
  task: string;
  pred: string;
  /** anything else the scorer needs (answers, all_classes, length, ground_truth, ...) */
  [field: string]: unknown;
}

function recordKey(task: string, id: string): string {
  return `${task}\u0000${id}`;
}

/** Parses prediction lines; `truncatedTail` says a last line without newline was unreadable and dropped. */
export function parsePredictions(text: string, source: string): { records: PredictionRecord[]; truncatedTail: boolean } {
  const { lines, truncatedTail } = parseJsonl(text, source, { allowTruncatedTail: true });
  const records = lines.map((jl) => {
    const r = RecordReader.of(source, jl);
    r.string('id');
    r.string('task');
    r.string('pred');
    r.number('index');
    return r.obj as PredictionRecord;
  });
  return { records, truncatedTail };
}

export function readPredictionFile(path: string): { records: PredictionRecord[]; truncatedTail: boolean } {
  if (!existsSync(path)) throw new CommvqError(`${path}: file not found`);
  return parsePredictions(readFileSync(path, 'utf8'), path);
}

/**
 * An append-only prediction file for one run (or shard). Opening it reads what a previous run finished; records are
 * appended one line at a time, so a crash loses at most the example in flight.
 */
export class PredictionLog {
  private readonly done = new Map<string, PredictionRecord>();

  private constructor(readonly path: string) {}

  static open(path: string): PredictionLog {
    const log = new PredictionLog(path);
    if (existsSync(path)) {
      const { records, truncatedTail } = readPredictionFile(path);
      for (const r of records) if (!log.done.has(recordKey(r.task, r.id))) log.done.set(recordKey(r.task, r.id), r);
      // rewrite without the cut line (or the duplicates a crashed rerun may have left), so appends start clean
      if (truncatedTail || log.done.size !== records.length) log.rewrite();
    }
    return log;
  }

  has(task: string, id: string): boolean {
    return this.done.has(recordKey(task, id));
  }

  get(task: string, id: string): PredictionRecord | undefined {
    return this.done.get(recordKey(task, id));
  }

  get size(): number {
    return this.done.size;
  }

  records(): PredictionRecord[] {
    return [...this.done.values()];
  }

  append(record: PredictionRecord): void {
    const key = recordKey(record.task, record.id);
    if (this.done.has(key)) throw new CommvqError(`${this.path}: ${record.task} example ${record.id} is already there`);
    appendFileSync(this.path, JSON.stringify(record) + '\n');
    this.done.set(key, record);
  }

  private rewrite(): void {
    writeFileAtomic(this.path, [new TextEncoder().encode(this.records().map((r) => JSON.stringify(r) + '\n').join(''))]);
  }
}

export interface MergeResult {
  /** sorted by task, then dataset index, then id */
  records: PredictionRecord[];
  /** identical repeats dropped */
  duplicates: number;
}

/** Combines prediction lists; a (task, id) with two different predictions is an error naming both sources. */
export function mergePredictions(sources: readonly { source: string; records: readonly PredictionRecord[] }[]): MergeResult {
  const seen = new Map<string, { record: PredictionRecord; source: string }>();
  let duplicates = 0;
  for (const { source, records } of sources) {
    for (const r of records) {
      const key = recordKey(r.task, r.id);
      const prev = seen.get(key);
      if (!prev) seen.set(key, { record: r, source });
      else if (prev.record.pred === r.pred) duplicates++;
      else throw new CommvqError(`${r.task} example ${r.id}: different predictions in ${prev.source} and ${source}`, 'the shards come from different runs; merge files of one run');
    }
  }
  const records = [...seen.values()].map((v) => v.record);
  records.sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : a.index - b.index || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
  return { records, duplicates };
}

/** Reads and merges prediction files, writing the result (atomically) when `outPath` is given. */
export function mergePredictionFiles(paths: readonly string[], outPath?: string): MergeResult & { truncatedTails: string[] } {
  if (paths.length === 0) throw new CommvqError('eval merge: no prediction files given');
  const truncatedTails: string[] = [];
  const sources = paths.map((p) => {
    const { records, truncatedTail } = readPredictionFile(p);
    if (truncatedTail) truncatedTails.push(p);
    return { source: p, records };
  });
  const merged = mergePredictions(sources);
  if (outPath) writeFileAtomic(outPath, [new TextEncoder().encode(merged.records.map((r) => JSON.stringify(r) + '\n').join(''))]);
  return { ...merged, truncatedTails };
}
