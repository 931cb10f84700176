/**
 * The token stream a perplexity run scores: the corpus's documents in file order, each encoded as the tokenizer's
 * post-processor says (BOS first for Llama), concatenated, cut at `maxTokens`. Any corpus collect-kv reads (JSON
 * lines, Parquet, Arrow, a folder of .txt files), or one .txt file as a single document. The stream's hash goes into
 * the run's manifest, so a rerun resumes only over the same tokens.
 *
 *   const s = await corpusTokens('fineweb-edu/000.parquet', tok, { maxTokens: 1_000_000 });   // s.ids.length ≤ 1e6
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { CommvqError } from '../../errors.js';
import { readCorpus } from '../../data/corpus.js';
import type { EvalTokenizer } from '../tokenizer.js';

export interface CorpusTokens {
  ids: Int32Array;
  /** documents read (the last may be cut) */
  documents: number;
  /** 16 hex digits of SHA-256 of the ids (little-endian i32) */
  hash: string;
}

export async function corpusTokens(path: string, tok: EvalTokenizer, o: { field?: string; maxTokens?: number } = {}): Promise<CorpusTokens> {
  const cap = o.maxTokens ?? Infinity;
  const ids: number[] = [];
  let documents = 0;
  for await (const doc of documentsOf(path, o.field)) {
    if (ids.length >= cap) break;
    documents++;
    for (const id of tok.encode(doc)) {
      if (ids.length >= cap) break;
      ids.push(id);
    }
  }
  if (documents === 0) throw new CommvqError(`${path}: the corpus holds no documents`);
  const array = Int32Array.from(ids);
  const hash = createHash('sha256').update(new Uint8Array(array.buffer)).digest('hex').slice(0, 16);
  return { ids: array, documents, hash };
}

async function* documentsOf(path: string, field: string | undefined): AsyncGenerator<string> {
  if (existsSync(path) && statSync(path).isFile() && path.toLowerCase().endsWith('.txt')) {
    yield readFileSync(path, 'utf8');
    return;
  }
  yield* readCorpus(path, { field });
}
