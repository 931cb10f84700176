/**
 * GSM8K's test set as openai/gsm8k publishes it: JSON lines (`test.jsonl`, the GitHub release) or Parquet
 * (`main/test-00000-of-00001.parquet`, the Hugging Face release), records of `question` and `answer` (the worked
 * solution ending "#### N"). An example's id is its line or row number, so shards and merges agree on it.
 *
 *   const examples = await readGsm8k('grade-school-math/test.jsonl');   // 1319 examples
 */
import { existsSync } from 'node:fs';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { CommvqError, OptionError } from '../../errors.js';
import { readJsonlFile } from '../jsonl.js';
import { gsm8kGold } from './answer.js';

export interface Gsm8kExample {
  id: string;
  index: number;
  question: string;
  /** the dataset's worked answer */
  answer: string;
  /** its final number, normalized */
  gold: string;
}

export async function readGsm8k(path: string): Promise<Gsm8kExample[]> {
  if (!existsSync(path)) throw new OptionError('data', path, 'file not found', 'give GSM8K test.jsonl or test-00000-of-00001.parquet (openai/gsm8k)');
  const rows = path.toLowerCase().endsWith('.parquet') ? await parquetRows(path) : jsonlRows(path);
  if (rows.length === 0) throw new CommvqError(`${path}: no examples`);
  return rows.map(({ value, where }, index) => {
    const r = value as Record<string, unknown>;
    if (typeof r?.question !== 'string' || typeof r.answer !== 'string') throw new CommvqError(`${where}: a GSM8K record needs 'question' and 'answer' text`);
    return { id: String(index), index, question: r.question, answer: r.answer, gold: gsm8kGold(r.answer, where) };
  });
}

function jsonlRows(path: string): { value: unknown; where: string }[] {
  return readJsonlFile(path).lines.map((l) => ({ value: l.value, where: `${path}:${l.line}` }));
}

async function parquetRows(path: string): Promise<{ value: unknown; where: string }[]> {
  try {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    const records = await parquetReadObjects({ file, metadata, columns: ['question', 'answer'], compressors });
    return records.map((value, i) => ({ value, where: `${path} row ${i}` }));
  } catch (err) {
    throw new CommvqError(`${path}: not a readable GSM8K Parquet file: ${(err as Error).message}`);
  }
}
