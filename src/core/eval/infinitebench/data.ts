/**
 * Reads InfiniteBench's JSON-lines files (`<task>.jsonl` from xinrongzhang2022/InfiniteBench): one object per line
 * with id, context, input, answer (a list, or a single value), options (choice and code_debug tasks).
 *
 *   const examples = readInfinitebenchFile(infinitebenchDataPath('data', 'passkey'));
 */
import { join } from 'node:path';
import { CommvqError } from '../../errors.js';
import { parseJsonl, readJsonlFile, RecordReader, taskLines, type JsonLine } from '../jsonl.js';

export type InfiniteBenchAnswer = string | number | (string | number)[];

export interface InfiniteBenchExample {
  /** the file's `id`, or `line-N` */
  id: string;
  /** 0-based position in the file */
  index: number;
  context: string;
  input: string;
  answer: InfiniteBenchAnswer;
  options: string[];
}

export function infinitebenchDataPath(dir: string, task: string): string {
  return join(dir, `${task}.jsonl`);
}

export function readInfinitebenchFile(path: string): InfiniteBenchExample[] {
  return infinitebenchExamples(readJsonlFile(path).lines, path);
}

export function parseInfinitebenchJsonl(text: string, source: string): InfiniteBenchExample[] {
  return infinitebenchExamples(parseJsonl(text, source).lines, source);
}

function infinitebenchExamples(lines: readonly JsonLine[], source: string): InfiniteBenchExample[] {
  const seen = new Map<string, number>();
  return taskLines([...lines], source).map((jl, index) => {
    const r = RecordReader.of(source, jl);
    const id = r.id('id') ?? `line-${jl.line}`;
    const first = seen.get(id);
    if (first !== undefined) throw new CommvqError(`${source}:${jl.line}: id '${id}' repeats line ${first}`);
    seen.set(id, jl.line);
    const answer = r.obj.answer;
    const scalar = (v: unknown) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
    if (!(scalar(answer) || (Array.isArray(answer) && answer.every(scalar)))) r.fail('field "answer" must be a string, a number or a list of them');
    // InfiniteBench names the text "context"; a few old files call it "content"
    const context = r.has('context') ? r.string('context') : r.has('content') ? r.string('content') : r.fail('field "context" must be a string');
    return {
      id,
      index,
      context,
      input: r.has('input') ? r.string('input') : '',
      answer: answer as InfiniteBenchAnswer,
      options: r.has('options') ? r.stringList('options') : [],
    };
  });
}
