/**
 * Every Arrow reader of the core names a truncated file and calls it truncated or damaged (issue 17, item 6): key and
 * value codebooks (whole and footer-only reads), and kv streams read without a manifest to check their size against.
 * apache-arrow's own messages name no file. Built from the demo config: no fixtures needed.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readKeyCodebook, readKeyCodebookMeta } from '../../src/core/keys/format.js';
import { kvFileName, kvSchema } from '../../src/core/kv/kv-format.js';
import { KvFile } from '../../src/core/kv/kv-reader.js';
import { KvStreamWriter } from '../../src/core/kv/kv-writer.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { readValueCodebook, readValueCodebookShape } from '../../src/core/values/value-codebook-file.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-arrow-read-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const halve = (path: string) => truncateSync(path, Math.floor(statSync(path).size / 2));
const damaged = (path: string) => new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: truncated or damaged Arrow file`);

describe('a truncated Arrow file is named by its reader', () => {
  const books = writeRandomCodebooks(join(work, 'run'), parseModelConfig(DEMO_CONFIG, 'demo'), 1);
  halve(books.key);
  halve(books.value);

  it('a key codebook', async () => {
    expect(() => readKeyCodebook(books.key)).toThrow(damaged(books.key));
    await expect(readKeyCodebookMeta(books.key)).rejects.toThrow(damaged(books.key));
  });

  it('a value codebook', async () => {
    expect(() => readValueCodebook(books.value, new CpuBackend())).toThrow(damaged(books.value));
    await expect(readValueCodebookShape(books.value)).rejects.toThrow(damaged(books.value));
  });

  it('a kv stream cut inside a window', async () => {
    const runDir = join(work, 'kv-run');
    mkdirSync(join(runDir, 'kv'), { recursive: true });
    const path = join(runDir, 'kv', kvFileName('key', 0));
    const schema = kvSchema({
      kind: 'key', layer: 0, layout: 'HF', rope: 'pre', dtype: 'f16', kvHeads: 1, headDim: 8, seqLen: 4, model: 'm', configHash: 'c', tokenizerHash: 't', corpus: 'x', seed: 1,
    });
    const writer = await KvStreamWriter.open(path, schema, undefined);
    for (const seq of [0, 1]) await writer.appendWindow(seq, new Int32Array(4), new Uint16Array(32));
    await writer.finish();
    truncateSync(path, statSync(path).size - 40);
    const file = KvFile.open(runDir, 'key', 0); // no manifest: nothing to compare its size with
    expect(() => [...file.batches()]).toThrow(damaged(path));
  });
});
