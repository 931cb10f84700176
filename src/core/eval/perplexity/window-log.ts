/**
 * The finished windows of one cache in a perplexity run: one JSON line per window, appended as soon as it is scored,
 * so an interrupted run resumes where it stopped. A last line cut short by a crash is dropped and the file repaired.
 *
 *   const log = WindowLog.open('runs/ppl/windows/dense.jsonl');
 *   if (!log.has(3)) log.append({ window: 3, begin: 6144, end: 8192, count: 2048, nll: 5123.4 });
 */
import { appendFileSync, existsSync } from 'node:fs';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { readJsonlFile } from '../jsonl.js';
import { CommvqError } from '../../errors.js';

export interface WindowRecord {
  window: number;
  begin: number;
  end: number;
  /** tokens scored */
  count: number;
  /** Σ NLL over them (natural log) */
  nll: number;
}

export class WindowLog {
  private readonly done = new Map<number, WindowRecord>();

  private constructor(readonly path: string) {}

  static open(path: string): WindowLog {
    const log = new WindowLog(path);
    if (!existsSync(path)) return log;
    const { lines, truncatedTail } = readJsonlFile(path, { allowTruncatedTail: true });
    for (const { line, value } of lines) {
      const r = value as WindowRecord;
      if (typeof r?.window !== 'number' || typeof r.nll !== 'number' || typeof r.count !== 'number') throw new CommvqError(`${path}:${line}: not a perplexity window record`);
      log.done.set(r.window, r);
    }
    if (truncatedTail || log.done.size !== lines.length) writeFileAtomic(path, [Buffer.from(log.records().map((r) => JSON.stringify(r) + '\n').join(''))]);
    return log;
  }

  has(window: number): boolean {
    return this.done.has(window);
  }

  records(): WindowRecord[] {
    return [...this.done.values()].sort((a, b) => a.window - b.window);
  }

  append(r: WindowRecord): void {
    appendFileSync(this.path, JSON.stringify(r) + '\n');
    this.done.set(r.window, r);
  }
}
