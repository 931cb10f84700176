/**
 * The reader against files PyTorch itself wrote (test/reference/fixtures, made by scripts/make_reference_fixtures.py):
 * import them with the centres checked, export again, and compare with what torch wrote — the pickle byte for byte
 * (storage locations aside: torch on a GPU records 'cuda:0', the export 'cpu') and every storage bit for bit, so θ
 * was read exactly and the centres rebuilt from it are torch's T·θ; and the bf16 value tensors come back unchanged.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsCheckpoint } from '../../src/core/io/safetensors.js';
import { ZipReader } from '../../src/core/io/zip-reader.js';
import { exportReference } from '../../src/core/reference/export-reference.js';
import { importReference } from '../../src/core/reference/import-reference.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const work = mkdtempSync(join(tmpdir(), 'commvq-torchfx-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** name (without the archive folder) → bytes, for data.pkl and the storages. */
function records(path: string): Map<string, Buffer> {
  const zip = new ZipReader(path);
  const out = new Map<string, Buffer>();
  for (const e of zip.entries) {
    const name = e.name.slice(e.name.indexOf('/') + 1);
    if (name === 'data.pkl' || name.startsWith('data/')) out.set(name, Buffer.from(zip.read(e)));
  }
  zip.close();
  return out;
}

/** A pickle's storage locations as 'cpu' (BINUNICODE 'cuda:N' → 'cpu'). */
function cpuLocations(pkl: Buffer): Buffer {
  const cuda = /X\x06\x00\x00\x00cuda:\d/g;
  return Buffer.from(pkl.toString('latin1').replace(cuda, 'X\x03\x00\x00\x00cpu'), 'latin1');
}

describe('files written by PyTorch', () => {
  const values = join(FIXTURES, 'Llama-3.1-8B-Instruct-CommVQ-1bit');
  const keys = join(FIXTURES, 'Llama-3.1-8B-Instruct-CommVQ-1bit-codebook');

  it('import with the centres checked, and export back to the same pickles and storages', async () => {
    const r = importReference({ values, keys, out: join(work, 'run'), checkCentres: true });
    expect(r).toMatchObject({ bits: 1, layers: 2, residuals: 3, groups: 1, halfSize: 4, pairs: 64, codeBits: 128, valueDtype: 'BF16', unused: [], centres: { checked: true, maxAbsError: 0 } });
    const e = await exportReference({ run: join(work, 'run'), out: join(work, 'out') });
    expect(e.valueDtype).toBe('BF16');
    for (const file of readdirSync(keys).filter((f) => f.endsWith('.pt'))) {
      const [torch, ours] = [join(keys, file), join(e.keysDir, file)].map(records);
      expect([...ours!.keys()].sort(), file).toEqual([...torch!.keys()].sort());
      expect(ours!.get('data.pkl')!.equals(cpuLocations(torch!.get('data.pkl')!)), `${file}: data.pkl`).toBe(true);
      for (const [name, bytes] of torch!) if (name !== 'data.pkl') expect(ours!.get(name)!.equals(bytes), `${file}: ${name}`).toBe(true);
    }
    const [given, exported] = [values, e.valuesDir].map((d) => SafetensorsCheckpoint.open(d));
    const names = given!.list().map((t) => t.name).filter((n) => n.includes('.value_vq_model.'));
    expect(names).toHaveLength(2 * 8);
    for (const n of names) expect(Buffer.from(exported!.read(n)).equals(Buffer.from(given!.read(n))), n).toBe(true);
    given!.close();
    exported!.close();
  });
});
