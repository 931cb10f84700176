/**
 * torch.save files read without Python: tensors as views of storages (offset, strides), the storage types torch
 * writes, the archive folder named after the file; and every way such a file can be wrong, refused in one line.
 * Files are made by torchSave (whose pickle is CPython's byte for byte: pickle.test.ts) or, for views and types
 * torchSave never writes, by hand from the same pieces.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/core/io/atomic-write.js';
import { PyTuple } from '../../src/core/io/pickle.js';
import { pickle, PyFloat, PyGlobal, PyPersistent, PyReduce, type PyValue } from '../../src/core/io/pickle-writer.js';
import { TorchFile, TorchTensor } from '../../src/core/io/torch-file.js';
import { F32Tensor, torchSave } from '../../src/core/io/torch-save.js';
import { ZipStoreWriter } from '../../src/core/io/zip-writer.js';
import { f32ToBf16 } from '../../src/core/tensor/dtype.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-torch-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A torch.save-style archive with the given pickle value and raw storages. */
function handMade(file: string, value: PyValue, storages: Record<string, Uint8Array>, o: { folder?: string } = {}): string {
  const path = join(work, file);
  const folder = o.folder ?? file.replace(/\.pt$/, '');
  const zip = new ZipStoreWriter();
  zip.add(`${folder}/data.pkl`, pickle(value));
  zip.add(`${folder}/byteorder`, new TextEncoder().encode('little'));
  for (const [k, b] of Object.entries(storages)) zip.add(`${folder}/data/${k}`, b);
  zip.add(`${folder}/version`, new TextEncoder().encode('3\n'));
  writeFileAtomic(path, zip.finish());
  return path;
}

function view(key: string, type: string, numel: number, offset: number, shape: number[], stride: number[]): PyValue {
  const storage = new PyPersistent(new PyTuple(['storage', new PyGlobal('torch', type), key, 'cuda:0', numel]));
  return new PyReduce(new PyGlobal('torch._utils', '_rebuild_tensor_v2'), new PyTuple([storage, offset, new PyTuple(shape), new PyTuple(stride), false, new PyReduce(new PyGlobal('collections', 'OrderedDict'), new PyTuple([]))]));
}

const f32Bytes = (a: number[]) => new Uint8Array(Float32Array.from(a).buffer);

describe('torch.save files', () => {
  it('round-trips a dict of floats, lists and tensors through torchSave', () => {
    const path = join(work, '003_1.pt');
    const theta = Float32Array.from({ length: 12 }, (_, i) => i - 5.5);
    torchSave(path, new Map<string, PyFloat | F32Tensor | F32Tensor[]>([['final_error', new PyFloat(0.1)], ['steps', [new F32Tensor(theta, [6, 2]), new F32Tensor(Float32Array.of(3), [])]]]));
    const f = TorchFile.open(path);
    try {
      expect(f.prefix).toBe('003_1');
      const root = f.root as Map<string, unknown>;
      expect(root.get('final_error')).toBe(0.1);
      const [t, s] = root.get('steps') as TorchTensor[];
      expect(t!.shape).toEqual([6, 2]);
      expect(f.float32(t!, 'theta')).toEqual(theta);
      expect(s!.shape).toEqual([]);
      expect(f.float32(s!, 'scalar')).toEqual(Float32Array.of(3));
      expect(f.unreferencedEntries()).toEqual([]);
    } finally {
      f.close();
    }
  });

  it('reads views: an offset into a shared storage, a transpose, and bf16 storages exactly', () => {
    const data = Array.from({ length: 12 }, (_, i) => i); // storage of 12: rows of 4
    const bf = new Uint16Array(data.map((x) => f32ToBf16(x / 3)));
    const path = handMade('views.pt', new Map<string, PyValue>([
      ['tail', view('0', 'FloatStorage', 12, 4, [2, 4], [4, 1])],
      ['transposed', view('0', 'FloatStorage', 12, 0, [4, 3], [1, 4])],
      ['bf16', view('1', 'BFloat16Storage', 12, 0, [12], [1])],
    ]), { 0: f32Bytes(data), 1: new Uint8Array(bf.buffer) });
    const f = TorchFile.open(path);
    const root = f.root as Map<string, TorchTensor>;
    expect([...f.float32(root.get('tail')!, 'tail')]).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect([...f.float32(root.get('transposed')!, 't')]).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect([...f.float32(root.get('bf16')!, 'b')]).toEqual([...bf].map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]));
    f.close();
  });

  it('finds the archive folder from the first entry, whatever the file is called now', () => {
    const path = handMade('renamed.pt', new Map([['x', new PyFloat(1)]]), {}, { folder: 'archive' });
    const f = TorchFile.open(path);
    expect(f.prefix).toBe('archive');
    f.close();
  });

  const bad: [string, () => string, RegExp][] = [
    ['an unknown storage type', () => handMade('u.pt', view('0', 'ComplexFloatStorage', 1, 0, [1], [1]), { 0: f32Bytes([1, 2]) }), /u\.pt: unknown storage type torch\.ComplexFloatStorage/],
    ['an unknown global', () => handMade('g.pt', new PyReduce(new PyGlobal('os', 'system'), new PyTuple(['ls'])), {}), /g\.pt: unknown global os\.system in data\.pkl/],
    ['a storage of the wrong size', () => handMade('s.pt', new Map([['t', view('0', 'FloatStorage', 4, 0, [4], [1])]]), { 0: f32Bytes([1, 2, 3]) }), /s\.pt: storage 0 holds 12 bytes, 4 × float32 needs 16/],
    ['a missing storage', () => handMade('m.pt', new Map([['t', view('0', 'FloatStorage', 4, 0, [4], [1])]]), {}), /m\.pt: storage 0 is missing from the archive/],
    ['a view past its storage', () => handMade('v.pt', new Map([['t', view('0', 'FloatStorage', 4, 2, [4], [1])]]), { 0: f32Bytes([1, 2, 3, 4]) }), /v\.pt: t reaches elements \[2, 5\] of a storage of 4/],
  ];
  it.each(bad)('refuses %s in one line naming the file', (_, make, message) => {
    const path = make();
    expect(() => {
      const f = TorchFile.open(path);
      try {
        const t = (f.root as Map<string, TorchTensor>).get('t');
        if (t) f.float32(t, 't');
      } finally {
        f.close();
      }
    }).toThrow(message);
  });
});
