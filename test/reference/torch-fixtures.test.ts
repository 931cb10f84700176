/**
 * The reader against files PyTorch itself wrote (test/reference/fixtures, made by scripts/make_reference_fixtures.py):
 * import them with the centres checked, export again, and compare with what torch wrote — the pickled object graph
 * (byte for byte too where torch saved from the CPU; storage locations aside) and every storage bit for bit, so θ
 * was read exactly and the centres rebuilt from it are torch's T·θ; and the bf16 value tensors come back unchanged.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsCheckpoint } from '../../src/core/io/safetensors.js';
import { TorchFile, TorchTensor } from '../../src/core/io/torch-file.js';
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

/**
 * The object a torch file holds, as plain data: tensors as (storage type, key, offset, shape, stride), their location
 * left out (torch on a GPU records 'cuda:0', the export 'cpu'). Two files with equal plain data unpickle to the same
 * object graph even where their pickles differ in memo use (torch memoizes the one 'cpu' string of a CPU save, not the
 * 'cuda:0' strings it makes per storage).
 */
function plain(path: string): unknown {
  const f = TorchFile.open(path);
  const walk = (x: unknown): unknown => {
    if (x instanceof TorchTensor) return { tensor: x.storage.type, key: x.storage.key, offset: x.offset, shape: x.shape, stride: x.stride };
    if (x instanceof Map) return [...x.entries()].map(([k, v]) => [k, walk(v)]);
    if (Array.isArray(x)) return x.map(walk);
    return x;
  };
  const out = walk(f.root);
  f.close();
  return out;
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
      expect(plain(join(e.keysDir, file)), `${file}: data.pkl`).toEqual(plain(join(keys, file)));
      // a CPU save (no 'cuda:' location) pickles as ours does, byte for byte
      if (!torch!.get('data.pkl')!.includes('cuda:')) expect(ours!.get('data.pkl')!.equals(torch!.get('data.pkl')!), `${file}: data.pkl bytes`).toBe(true);
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
