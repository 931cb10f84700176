import { CommvqError } from '../errors.js';
import { SeededRandom } from '../model/seeded-random.js';

/** What packing needs of a tokenizer: ids with special tokens (BOS) added as the tokenizer's post-processor says. */
export interface PackingTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
}

export interface PackingOptions {
  /** tokens per window */
  seqLen: number;
  /** the id placed after every document (the reference: the tokenizer's eos, `<|eot_id|>` for Llama-3-Instruct) */
  concatTokenId: number;
  seed: number;
  /** characters read into one shuffle buffer (reference: seqLen × 3.6 chars/token × 1024 sequences) */
  bufferChars?: number;
}

/** The reference's buffer size: trl's ConstantLengthDataset with 3.6 chars per token and 1024 sequences. */
export function defaultBufferChars(seqLen: number): number {
  return seqLen * 3.6 * 1024;
}

/**
 * Packs documents into fixed-length windows the way the reference does (trl 0.11.1 ConstantLengthDataset, spec §1.3):
 *   1. read documents into a buffer until it holds ≥ bufferChars characters (or the corpus ends);
 *   2. shuffle the buffer's documents;
 *   3. tokenize each with special tokens (BOS first) and append `concatTokenId` after each;
 *   4. concatenate, cut into seqLen windows, drop the last partial window, shuffle the windows, yield them;
 *   then the next buffer. Positions run 0..seqLen−1 in every window; attention spans document boundaries.
 * Shuffles use SeededRandom(seed) (Fisher–Yates), so the same corpus, seed and lengths always give the same windows
 * (not the same as Python's `random`: bit-level parity with the reference's order is not a goal).
 *
 *   for await (const window of packWindows(readCorpus(path), tokenizer, { seqLen: 8192, concatTokenId: 128009, seed: 42 }))
 */
export async function* packWindows(docs: AsyncIterable<string>, tokenizer: PackingTokenizer, options: PackingOptions): AsyncGenerator<Int32Array> {
  const { seqLen } = options;
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new CommvqError(`seq-len must be a positive integer, got ${seqLen}`);
  const bufferChars = options.bufferChars ?? defaultBufferChars(seqLen);
  const rng = new SeededRandom(options.seed);
  const iterator = docs[Symbol.asyncIterator]();
  let more = true;
  while (more) {
    const buffer: string[] = [];
    let chars = 0;
    while (chars < bufferChars) {
      const next = await iterator.next();
      if (next.done) {
        more = false;
        break;
      }
      buffer.push(next.value);
      chars += next.value.length;
    }
    if (buffer.length === 0) break;
    shuffle(buffer, rng);
    const all: number[] = [];
    for (const doc of buffer) {
      for (const id of tokenizer.encode(doc, { addSpecialTokens: true })) all.push(id);
      all.push(options.concatTokenId);
    }
    const windows: Int32Array[] = [];
    for (let i = 0; i + seqLen <= all.length; i += seqLen) windows.push(Int32Array.from(all.slice(i, i + seqLen)));
    shuffle(windows, rng);
    yield* windows;
  }
}

/** In-place Fisher–Yates shuffle. */
export function shuffle<T>(items: T[], rng: SeededRandom): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}
