/**
 * Writes a file `torch.load` reads (also with weights_only=True): what `torch.save(obj, path)` writes for an object
 * of dicts, lists, numbers and CPU float32 tensors. The records, in torch's order: <name>/data.pkl (protocol 2),
 * .format_version, .storage_alignment, byteorder, data/0, data/1, … (one contiguous storage per tensor, keys in
 * pickling order), version, .data/serialization_id; entries stored, 64-byte aligned (zip-writer.ts). The archive
 * folder is the file's base name, as torch names it. Deterministic: the same object gives the same bytes.
 *
 *   torchSave('out/000_0.pt', new Map([['final_error', new PyFloat(0.01)], ['steps', [step0, step1]]]));
 */
import { crc32 } from 'node:zlib';
import { writeFileAtomic } from './atomic-write.js';
import { PyTuple } from './pickle.js';
import { pickle, PyFloat, PyGlobal, PyPersistent, PyReduce, type PyValue } from './pickle-writer.js';
import { torchArchiveName } from './torch-file.js';
import { ZipStoreWriter } from './zip-writer.js';

/** A float32 tensor to save: row-major data and its shape ([] for a 0-d tensor). */
export class F32Tensor {
  constructor(
    readonly data: Float32Array,
    readonly shape: number[],
  ) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`F32Tensor: ${data.length} values for shape [${shape.join(', ')}]`);
  }
}

/** What torchSave takes: PyValue with F32Tensor anywhere a value may be. */
export type TorchValue = Exclude<PyValue, PyValue[] | Map<string, PyValue>> | F32Tensor | TorchValue[] | Map<string, TorchValue>;

/** torch's PyTorchStreamWriter version for torch.save files. */
const FILE_FORMAT_VERSION = '3\n';

/** The bytes of the torch.save file at `path` for `value` (the archive folder is named after `path`). */
export function torchSaveBytes(path: string, value: TorchValue, o: { forceZip64?: boolean } = {}): Uint8Array[] {
  const storages: Float32Array[] = [];
  const tensorValue = (t: F32Tensor): PyValue => {
    const key = String(storages.length);
    storages.push(t.data);
    const stride = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    const storage = new PyPersistent(new PyTuple(['storage', new PyGlobal('torch', 'FloatStorage'), key, 'cpu', t.data.length]));
    const hooks = new PyReduce(new PyGlobal('collections', 'OrderedDict'), new PyTuple([]));
    return new PyReduce(new PyGlobal('torch._utils', '_rebuild_tensor_v2'), new PyTuple([storage, 0, new PyTuple(t.shape), new PyTuple(stride), false, hooks]));
  };
  const convert = (v: TorchValue): PyValue => {
    if (v instanceof F32Tensor) return tensorValue(v);
    if (Array.isArray(v)) return v.map(convert);
    if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, convert(x)]));
    return v;
  };
  const name = torchArchiveName(path);
  const zip = new ZipStoreWriter(o);
  const records: [string, Uint8Array][] = [['data.pkl', pickle(convert(value))]];
  records.push(['.format_version', text('1')], ['.storage_alignment', text('64')], ['byteorder', text('little')]);
  storages.forEach((s, i) => records.push([`data/${i}`, new Uint8Array(s.buffer, s.byteOffset, s.byteLength)]));
  records.push(['version', text(FILE_FORMAT_VERSION)]);
  records.push(['.data/serialization_id', text(serializationId(records))]);
  for (const [record, bytes] of records) zip.add(`${name}/${record}`, bytes);
  return zip.finish();
}

/**
 * Writes `value` as torch.save would, atomically.
 *
 *   torchSave('codebook/000_0.pt', new Map([['theta', new F32Tensor(theta, [128, 64])]]));
 */
export function torchSave(path: string, value: TorchValue): void {
  writeFileAtomic(path, torchSaveBytes(path, value));
}

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** 40 digits from the records' names and CRCs, as torch's id is (its hash differs; readers only require presence). */
function serializationId(records: [string, Uint8Array][]): string {
  const names = crc32(records.map(([n]) => n).join('\n'));
  const data = records.reduce((h, [, b]) => crc32(b, h), 0);
  return String(names).padStart(20, '0') + String(data).padStart(20, '0');
}

export { PyFloat };
