import { CommvqError } from '../errors.js';
import { readTextFile } from '../io/read-text.js';

/** One parsed line of a JSON-lines file, with its 1-based line number for error messages. */
export interface JsonLine {
  line: number;
  value: unknown;
}

export interface ParseJsonlOptions {
  /** Drop a last line that is not valid JSON and has no newline after it (a write cut short), reporting it. */
  allowTruncatedTail?: boolean;
}

/**
 * Parses JSON-lines text; blank lines are skipped, a malformed line is an error naming `source:line`.
 *
 *   parseJsonl('{"a":1}\n{"a":2}\n', 'preds.jsonl')  // { lines: [{ line: 1, value: {a:1} }, ...], truncatedTail: false }
 */
export function parseJsonl(text: string, source: string, options: ParseJsonlOptions = {}): { lines: JsonLine[]; truncatedTail: boolean } {
  const raw = text.split('\n');
  const lines: JsonLine[] = [];
  let truncatedTail = false;
  for (let i = 0; i < raw.length; i++) {
    const s = raw[i].replace(/\r$/, '');
    if (s.trim() === '') continue;
    try {
      lines.push({ line: i + 1, value: JSON.parse(s) as unknown });
    } catch (err) {
      const isTail = i === raw.length - 1 && !text.endsWith('\n');
      if (isTail && options.allowTruncatedTail) {
        truncatedTail = true;
        continue;
      }
      throw new CommvqError(`${source}:${i + 1}: not a valid JSON line (${(err as Error).message})`);
    }
  }
  return { lines, truncatedTail };
}

/** Reads and parses a JSON-lines file; a missing file is an error naming it. */
export function readJsonlFile(path: string, options: ParseJsonlOptions = {}): { lines: JsonLine[]; truncatedTail: boolean } {
  const text = readTextFile(path);
  return parseJsonl(text, path, options);
}

/** A benchmark task file's lines, refused when it holds none (an empty task would run nothing and say it completed). */
export function taskLines(lines: JsonLine[], source: string): JsonLine[] {
  if (lines.length === 0) throw new CommvqError(`${source}: no examples: the task file is empty`, 'give the task file as the benchmark publishes it, or leave the task out');
  return lines;
}

/** Field readers that name the file, line and field in their errors. */
export class RecordReader {
  constructor(
    private readonly source: string,
    private readonly line: number,
    readonly obj: Record<string, unknown>,
  ) {}

  static of(source: string, jl: JsonLine): RecordReader {
    if (typeof jl.value !== 'object' || jl.value === null || Array.isArray(jl.value)) {
      throw new CommvqError(`${source}:${jl.line}: expected a JSON object`);
    }
    return new RecordReader(source, jl.line, jl.value as Record<string, unknown>);
  }

  fail(message: string): never {
    throw new CommvqError(`${this.source}:${this.line}: ${message}`);
  }

  has(key: string): boolean {
    return key in this.obj && this.obj[key] !== undefined;
  }

  string(key: string): string {
    const v = this.obj[key];
    if (typeof v !== 'string') this.fail(`field "${key}" must be a string`);
    return v;
  }

  number(key: string): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`field "${key}" must be a number`);
    return v;
  }

  stringList(key: string): string[] {
    const v = this.obj[key];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(`field "${key}" must be a list of strings`);
    return v as string[];
  }

  /** A list of strings, or null (LongBench writes null where a task has no classes). */
  stringListOrNull(key: string): string[] | null {
    const v = this.obj[key];
    if (v === null || v === undefined) return null;
    return this.stringList(key);
  }

  /** An id: a string, or a number written as its decimal text. */
  id(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    this.fail(`field "${key}" must be a string or a number`);
  }
}
