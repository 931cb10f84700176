/**
 * What the eval-run tests share: a temporary folder, the demo model written into it (tiny, seeded, byte-level
 * tokenizer: fast enough to run whole benchmarks on the CPU), small data files in the official formats, and readers
 * for a run folder's outputs.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { CpuBackend } from '../../../src/core/backend/cpu/cpu-backend.js';
import { fillerText } from '../../../src/core/eval/niah/filler.js';
import { writeDemoModel } from '../../../src/core/model/demo-model.js';

/** A temporary folder removed after the test file. */
export function tempRoot(prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), `commvq-${prefix}-`));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

export function demoModel(root: string): string {
  const dir = join(root, 'demo');
  if (!existsSync(join(dir, 'config.json'))) writeDemoModel(dir);
  return dir;
}

export const cpu = new CpuBackend();

export function read(path: string): string {
  return readFileSync(path, 'utf8');
}

export function readJson<T = Record<string, unknown>>(path: string): T {
  return JSON.parse(read(path)) as T;
}

export function jsonl(rows: readonly object[]): string {
  return rows.map((r) => JSON.stringify(r) + '\n').join('');
}

/** A short deterministic passage (the NIAH filler) of about `chars` characters. */
export function passage(seed: number, chars: number): string {
  return fillerText(seed, chars).slice(0, chars);
}

/** LongBench's official line format: input, context, answers, length, dataset, language, all_classes, _id. */
export function longbenchRow(task: string, i: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    input: `Question ${i}: what did the committee notice?`,
    context: passage(i + 1, 160),
    answers: [`the quiet harbour ${i}`],
    length: 900 + 2500 * i,
    dataset: task,
    language: 'en',
    all_classes: task === 'trec' ? ['Location', 'Number', 'Entity', 'Description'] : null,
    _id: `${task}-${i}-a1b2`,
    ...over,
  };
}

/** Writes `<dir>/<task>.jsonl` for each task with `n` examples. */
export function writeLongbenchData(dir: string, tasks: Record<string, number>): string {
  mkdirSync(dir, { recursive: true });
  for (const [task, n] of Object.entries(tasks)) writeFileSync(join(dir, `${task}.jsonl`), jsonl(Array.from({ length: n }, (_, i) => longbenchRow(task, i))));
  return dir;
}

/** InfiniteBench's line format: id, context, input, answer, options. */
export function infinitebenchRow(task: string, i: number): Record<string, unknown> {
  const context = passage(i + 7, 150);
  switch (task) {
    case 'passkey':
      return { id: i, context: `${context} The pass key is ${7100 + i}. Remember it.`, input: 'What is the pass key?', answer: [`${7100 + i}`], options: [] };
    case 'kv_retrieval':
      return { id: i, context: `{"k${i}": "v${i}x", "z": "q"}`, input: `Key: "k${i}"\nThe value associated with the specified key is: `, answer: [`v${i}x`], options: [] };
    case 'code_debug':
      return { id: i, context: `def f${i}(x):\n    return x +\n`, input: '', answer: `f${i}`, options: [`f${i}`, 'g', 'h', 'k'] };
    default:
      throw new Error(`no test rows for ${task}`);
  }
}

export function writeInfinitebenchData(dir: string, tasks: Record<string, number>): string {
  mkdirSync(dir, { recursive: true });
  for (const [task, n] of Object.entries(tasks)) writeFileSync(join(dir, `${task}.jsonl`), jsonl(Array.from({ length: n }, (_, i) => infinitebenchRow(task, i))));
  return dir;
}

/** A PNG file starts with these 8 bytes. */
export function isPng(path: string): boolean {
  return readFileSync(path).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
}
