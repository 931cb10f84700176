/**
 * Reads LongBench's official JSON-lines files (`data/<task>.jsonl`, `data/<task>_e.jsonl` for LongBench-E, from
 * THUDM/LongBench's data.zip): one object per line with input, context, answers, length, dataset, language,
 * all_classes, _id. Every problem names the file and line.
 *
 *   const examples = readLongbenchFile(longbenchDataPath('data', 'qasper'));
 */
import { join } from 'node:path';
import { CommvqError } from '../../errors.js';
import { parseJsonl, readJsonlFile, RecordReader, taskLines, type JsonLine } from '../jsonl.js';

export interface LongBenchExample {
  /** `_id` (unique within a task), or `line-N` when a file has no ids */
  id: string;
  /** 0-based position in the file: the order predictions are written and merged in */
  index: number;
  input: string;
  context: string;
  answers: string[];
  /** LongBench's `length` (words of the context); LongBench-E buckets by it */
  length: number;
  allClasses: string[] | null;
  dataset?: string;
  language?: string;
}

/** `<dir>/<task>.jsonl`, or `<dir>/<task>_e.jsonl` for LongBench-E. */
export function longbenchDataPath(dir: string, task: string, e = false): string {
  return join(dir, `${task}${e ? '_e' : ''}.jsonl`);
}

/** Reads one task file; a missing file, a malformed line or a missing field is an error naming `file:line`. */
export function readLongbenchFile(path: string): LongBenchExample[] {
  return longbenchExamples(readJsonlFile(path).lines, path);
}

/** Parses the text of one task file (what readLongbenchFile does after reading it). */
export function parseLongbenchJsonl(text: string, source: string): LongBenchExample[] {
  return longbenchExamples(parseJsonl(text, source).lines, source);
}

function longbenchExamples(lines: readonly JsonLine[], source: string): LongBenchExample[] {
  const seen = new Map<string, number>();
  return taskLines([...lines], source).map((jl, index) => {
    const r = RecordReader.of(source, jl);
    const id = r.id('_id') ?? `line-${jl.line}`;
    const first = seen.get(id);
    if (first !== undefined) throw new CommvqError(`${source}:${jl.line}: _id '${id}' repeats line ${first}`);
    seen.set(id, jl.line);
    return {
      id,
      index,
      input: r.string('input'),
      context: r.string('context'),
      answers: r.stringList('answers'),
      length: r.number('length'),
      allClasses: r.stringListOrNull('all_classes'),
      dataset: r.has('dataset') ? r.string('dataset') : undefined,
      language: r.has('language') ? r.string('language') : undefined,
    };
  });
}
