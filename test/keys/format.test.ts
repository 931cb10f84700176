/** The key-codebook Arrow file: round trip, self-describing metadata, refusal of other files and versions. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC, tableToIPC } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { readKeyCodebook, readKeyCodebookMeta, writeKeyCodebook, type KeyCodebookMeta } from '../../src/core/keys/format.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { randomArray } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-keyfmt-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const meta: KeyCodebookMeta = {
  method: 'em', bits: 1, residuals: 3, halfSize: 64, pairs: 32, headDim: 64, kvHeads: 2, layout: 'PI',
  data: 'runs/demo', model: 'demo', tokens: 4096, heldout: 512, seed: 7,
};
const shape = { residuals: 3, groups: 2, halfSize: 64, pairs: 32 };
const rng = new SeededRandom(1);
const layers = new Map([
  [3, new LayerKeyCodebook(shape, randomArray(rng, 3 * 2 * 128 * 32))],
  [0, new LayerKeyCodebook(shape, randomArray(rng, 3 * 2 * 128 * 32))],
]);

describe('key codebook file', () => {
  const path = join(work, 'key-codebook-em-1bit.arrow');
  writeKeyCodebook(path, meta, layers);

  it('round-trips θ of every layer, stage and group, and describes itself in the schema metadata', () => {
    const file = readKeyCodebook(path);
    expect(file.meta).toEqual(meta);
    expect([...file.layers.keys()].sort()).toEqual([0, 3]);
    for (const [l, cb] of layers) expect(file.layers.get(l)!.theta).toEqual(cb.theta);
    const table = tableFromIPC(readFileSync(path));
    expect(table.numRows).toBe(2 * 3 * 2);
    expect(Object.fromEntries(table.schema.metadata)).toMatchObject({
      'commvq.format': 'commvq.key-codebook', 'commvq.version': '1', 'commvq.residuals': '3', 'commvq.half_size': '64',
      'commvq.pairs': '32', 'commvq.layout': 'PI', 'commvq.method': 'em', 'commvq.seed': '7', 'commvq.layers': '0,3',
    });
    expect(Array.from(table.getChild('layer')!.toArray() as Int32Array).slice(0, 7)).toEqual([0, 0, 0, 0, 0, 0, 3]);
  });

  it('gives its metadata from the footer alone, with the same refusals', async () => {
    expect(await readKeyCodebookMeta(path)).toEqual(meta);
    writeFileSync(join(work, 'junk-meta.arrow'), 'hello');
    await expect(readKeyCodebookMeta(join(work, 'junk-meta.arrow'))).rejects.toThrow(/junk-meta\.arrow: truncated or damaged Arrow file/);
    await expect(readKeyCodebookMeta(join(work, 'none.arrow'))).rejects.toThrow(/none\.arrow: file not found/);
    const stream = join(work, 'stream.arrow');
    writeFileSync(stream, tableToIPC(tableFromIPC(readFileSync(path)), 'stream'));
    await expect(readKeyCodebookMeta(stream)).rejects.toThrow(/stream\.arrow: truncated or damaged Arrow file \(an Arrow stream, not an Arrow file\)/);
    const table = tableFromIPC(readFileSync(path));
    table.schema.metadata.set('commvq.version', '2');
    writeFileSync(join(work, 'future-meta.arrow'), tableToIPC(table, 'file'));
    await expect(readKeyCodebookMeta(join(work, 'future-meta.arrow'))).rejects.toThrow(/key codebook format version 2/);
  });

  it('refuses an unknown version, naming the command that rewrites the file', () => {
    const table = tableFromIPC(readFileSync(path));
    table.schema.metadata.set('commvq.version', '2');
    const future = join(work, 'future.arrow');
    writeFileSync(future, tableToIPC(table, 'file'));
    expect(() => readKeyCodebook(future)).toThrow(/key codebook format version 2; this commvq reads version 1/);
    try {
      readKeyCodebook(future);
    } catch (err) {
      expect((err as { hint?: string }).hint).toBe('rewrite it with: commvq train-key runs/demo --method em --bits 1');
    }
  });

  it('refuses other files', () => {
    const notArrow = join(work, 'junk.arrow');
    writeFileSync(notArrow, 'hello');
    expect(() => readKeyCodebook(notArrow)).toThrow(/junk\.arrow: not (a readable Arrow IPC file|a commvq key codebook)/);
    expect(() => readKeyCodebook(join(work, 'none.arrow'))).toThrow(/none\.arrow: key codebook not found/);
    const table = tableFromIPC(readFileSync(path));
    table.schema.metadata.set('commvq.format', 'commvq.scale');
    const other = join(work, 'other.arrow');
    writeFileSync(other, tableToIPC(table, 'file'));
    expect(() => readKeyCodebook(other)).toThrow(/not a commvq key codebook/);
  });
});
