/** The per-window message template writes exactly the bytes a full Arrow serialization would. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { kvSchema } from '../../src/core/kv/kv-format.js';
import { KvStreamWriter, windowBatchMessage } from '../../src/core/kv/kv-writer.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-writer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const schema = kvSchema({ kind: 'key', layer: 3, layout: 'HF', rope: 'pre', dtype: 'f16', kvHeads: 2, headDim: 64, seqLen: 96, model: 'm', configHash: 'c', tokenizerHash: 't', corpus: 'x', seed: 1 });

describe('KvStreamWriter', () => {
  it.each([96, 7])('appends windows of %i rows byte-identical to full serialization, readable as one stream', async (rows) => {
    const path = join(work, `w${rows}.arrows`);
    const writer = await KvStreamWriter.open(path, schema, undefined);
    const windows = [0, 1, 2].map((seq) => ({
      seq,
      tokens: Int32Array.from({ length: rows }, (_, i) => (seq * 1000 + i * 7) % 258),
      x: Uint16Array.from({ length: rows * 128 }, (_, i) => (i * 31 + seq) & 0x7bff),
    }));
    const start = writer.bytes;
    for (const w of windows) await writer.appendWindow(w.seq, w.tokens, w.x);
    await writer.finish();
    const file = readFileSync(path);
    const expected = Buffer.concat(windows.map((w) => windowBatchMessage(schema, w.seq, w.tokens, w.x)));
    expect(file.subarray(start, start + expected.length).equals(expected)).toBe(true);
    const table = tableFromIPC(file);
    expect(table.numRows).toBe(3 * rows);
    expect(table.getChild('seq')!.get(rows)).toBe(1);
    expect(table.getChild('token')!.get(rows + 1)).toBe(windows[1]!.tokens[1]);
  });
});
