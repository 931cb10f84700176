/** Packing follows the reference (trl ConstantLengthDataset): BOS per document, EOS between, fixed windows, tail dropped. */
import { describe, expect, it } from 'vitest';
import { packWindows } from '../../src/core/data/packing.js';

const BOS = 1000;
const EOS = 1001;
/** one id per character, BOS first: like a Llama-3 tokenizer's post-processor */
const tokenizer = { encode: (text: string) => [BOS, ...[...text].map((c) => c.charCodeAt(0))] };

async function pack(docs: string[], seqLen: number, seed: number, bufferChars?: number): Promise<number[][]> {
  async function* source() {
    yield* docs;
  }
  const out: number[][] = [];
  for await (const w of packWindows(source(), tokenizer, { seqLen, concatTokenId: EOS, seed, bufferChars })) out.push([...w]);
  return out;
}

describe('packWindows', () => {
  it('places BOS before and EOS after every document, cuts windows, and drops the partial tail', async () => {
    // one buffer holds all three documents: B a b E | B c E | B d e f E = 12 tokens in some document order,
    // cut into windows of 5 (2 windows; the last 2 tokens dropped), then the windows are shuffled
    const docs = ['ab', 'c', 'def'];
    const windows = await pack(docs, 5, 7, 1e9);
    const framed = (d: string) => [BOS, ...[...d].map((c) => c.charCodeAt(0)), EOS];
    const orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    const candidates = orders.map((order) => {
      const stream = order.flatMap((i) => framed(docs[i]!));
      return [stream.slice(0, 5), stream.slice(5, 10)];
    });
    const key = (ws: number[][]) => ws.map((w) => w.join(',')).sort().join('|');
    expect(candidates.map(key)).toContain(key(windows));
  });

  it('gives exactly the expected ids with one document per buffer (no shuffle effect)', async () => {
    // bufferChars 1: each document is its own buffer, so windows come in document order
    const windows = await pack(['abcdef', 'xyz'], 4, 1, 1);
    const a = [BOS, ...'abcdef'.split('').map((c) => c.charCodeAt(0)), EOS]; // 8 tokens → 2 windows
    const x = [BOS, ...'xyz'.split('').map((c) => c.charCodeAt(0)), EOS]; // 5 tokens → 1 window, 1 dropped
    const sorted = (w: number[][]) => [...w].sort((p, q) => p.join().localeCompare(q.join()));
    expect(sorted(windows.slice(0, 2))).toEqual(sorted([a.slice(0, 4), a.slice(4, 8)]));
    expect(windows[2]).toEqual(x.slice(0, 4));
    expect(windows).toHaveLength(3);
  });

  it('is stable for a seed and changes with it', async () => {
    const docs = Array.from({ length: 40 }, (_, i) => `document number ${i} `.repeat(1 + (i % 3)));
    const a = await pack(docs, 16, 42, 300);
    expect(await pack(docs, 16, 42, 300)).toEqual(a);
    expect(await pack(docs, 16, 43, 300)).not.toEqual(a);
    expect(a.every((w) => w.length === 16)).toBe(true);
  });

  it('yields nothing when the corpus holds fewer tokens than one window', async () => {
    expect(await pack(['ab'], 10, 0)).toEqual([]);
  });
});
