/**
 * PyTorch's `torch.save` file (the zip format, default since torch 1.6), read without Python: a zip archive whose
 * entries sit in one folder named after the file (`000_0/…` for `000_0.pt`; `archive/…` when saved to a buffer):
 *   data.pkl             the object, pickled (protocol 2); each storage a persistent id
 *                        ('storage', torch.<Type>Storage, key, location, numel)
 *   data/<key>           that storage's raw little-endian bytes, 64-byte aligned
 *   byteorder, version, .format_version, .storage_alignment, .data/serialization_id   (format records)
 * Tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
 * Opening reads data.pkl only; a tensor's bytes are read when asked for (TorchFile.float32), so a caller that needs
 * θ and not the centres reads 32 KiB of a 2 MiB step.
 *
 *   const f = TorchFile.open('codebook/000_0.pt');
 *   const steps = (f.root as Map<string, unknown>).get('steps');
 *   f.close();
 */
import { basename } from 'node:path';
import { CommvqError } from '../errors.js';
import { toFloat32Array, viewBytes } from '../tensor/dtype.js';
import { PyTuple, unpickle } from './pickle.js';
import { ZipReader, type ZipEntry } from './zip-reader.js';

/** The element types of the storage classes this reads, by class name. */
export const TORCH_STORAGE_TYPES = {
  FloatStorage: { dtype: 'float32', bytes: 4 },
  DoubleStorage: { dtype: 'float64', bytes: 8 },
  HalfStorage: { dtype: 'float16', bytes: 2 },
  BFloat16Storage: { dtype: 'bfloat16', bytes: 2 },
  LongStorage: { dtype: 'int64', bytes: 8 },
  IntStorage: { dtype: 'int32', bytes: 4 },
  ShortStorage: { dtype: 'int16', bytes: 2 },
  CharStorage: { dtype: 'int8', bytes: 1 },
  ByteStorage: { dtype: 'uint8', bytes: 1 },
  BoolStorage: { dtype: 'bool', bytes: 1 },
} as const;
export type TorchStorageType = keyof typeof TORCH_STORAGE_TYPES;
export type TorchDType = (typeof TORCH_STORAGE_TYPES)[TorchStorageType]['dtype'];

/** The format records torch writes beside data.pkl and the storages: not content, never reported as unused. */
const FORMAT_RECORDS = ['version', '.data/version', 'byteorder', '.format_version', '.storage_alignment', '.data/serialization_id'];

export class TorchStorage {
  constructor(
    readonly type: TorchStorageType,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
  get dtype(): TorchDType {
    return TORCH_STORAGE_TYPES[this.type].dtype;
  }
}

/** A tensor as the pickle describes it: a view (offset, size, stride in elements) of one storage. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

/** A class reference torch files may name, kept as such (e.g. a storage type used as a value). */
class TorchGlobal {
  constructor(readonly name: string) {}
}

export class TorchFile {
  /** the archive's folder name (what torch took from the file name) */
  readonly prefix: string;
  readonly root: unknown;
  private readonly storages = new Map<string, TorchStorage>();

  private constructor(private readonly zip: ZipReader) {
    const path = zip.path;
    const pkl = zip.entries.find((e) => e.name.endsWith('/data.pkl') && !e.name.slice(0, -'/data.pkl'.length).includes('/'));
    if (!pkl) throw new CommvqError(`${path}: not a torch.save file (no <name>/data.pkl in the zip)`);
    this.prefix = pkl.name.slice(0, -'/data.pkl'.length);
    const byteorder = zip.entry(`${this.prefix}/byteorder`);
    if (byteorder && new TextDecoder().decode(zip.read(byteorder)) !== 'little') throw new CommvqError(`${path}: saved on a big-endian machine; only little-endian files are read`);
    this.root = unpickle(zip.read(pkl), { global: (m, n) => this.global(m, n), persistent: (pid) => this.persistent(pid) }, `${path}: data.pkl`);
  }

  /**
   * Opens a torch.save file and unpickles its object (storages are not read).
   *
   *   const f = TorchFile.open('000_0.pt');   // f.root: Map { 'final_error' => 0.01, 'steps' => [...] }
   */
  static open(path: string): TorchFile {
    const zip = new ZipReader(path);
    try {
      return new TorchFile(zip);
    } catch (err) {
      zip.close();
      throw err;
    }
  }

  get path(): string {
    return this.zip.path;
  }

  /** A tensor's elements in row-major order as f32 (float16, bfloat16 and float32 exactly; float64 rounded). */
  float32(t: TorchTensor, what: string): Float32Array {
    const { bytes: item } = TORCH_STORAGE_TYPES[t.storage.type];
    const decode = FLOAT_DECODERS[t.storage.dtype];
    if (!decode) throw new CommvqError(`${this.path}: ${what} is a ${t.storage.dtype} tensor, not a floating-point one`);
    const entry = this.storageEntry(t.storage);
    const n = t.numel;
    if (n === 0) return new Float32Array(0);
    let lo = t.offset, hi = t.offset; // the elements the view touches: [lo, hi]
    t.shape.forEach((s, i) => (t.stride[i]! >= 0 ? (hi += (s - 1) * t.stride[i]!) : (lo += (s - 1) * t.stride[i]!)));
    if (lo < 0 || hi >= t.storage.numel) throw new CommvqError(`${this.path}: ${what} reaches elements [${lo}, ${hi}] of a storage of ${t.storage.numel}`);
    const raw = this.zip.read(entry, lo * item, (hi - lo + 1) * item);
    const all = decode(raw);
    if (isContiguous(t.shape, t.stride)) return all.length === n ? all : all.slice(0, n);
    const out = new Float32Array(n);
    const index = new Array<number>(t.shape.length).fill(0);
    for (let i = 0; i < n; i++) {
      let at = t.offset - lo;
      for (let d = 0; d < index.length; d++) at += index[d]! * t.stride[d]!;
      out[i] = all[at]!;
      for (let d = index.length - 1; d >= 0 && ++index[d]! === t.shape[d]!; d--) index[d] = 0;
    }
    return out;
  }

  /** Zip entries that are neither format records, data.pkl, nor a storage the pickle names. */
  unreferencedEntries(): string[] {
    const known = new Set([...FORMAT_RECORDS, 'data.pkl', ...[...this.storages.keys()].map((k) => `data/${k}`)].map((r) => `${this.prefix}/${r}`));
    return this.zip.entries.map((e) => e.name).filter((n) => !known.has(n));
  }

  close(): void {
    this.zip.close();
  }

  private storageEntry(s: TorchStorage): ZipEntry {
    const entry = this.zip.entry(`${this.prefix}/data/${s.key}`);
    if (!entry) throw new CommvqError(`${this.path}: storage ${s.key} is missing from the archive (truncated?)`);
    const want = s.numel * TORCH_STORAGE_TYPES[s.type].bytes;
    if (entry.size !== want) throw new CommvqError(`${this.path}: storage ${s.key} holds ${entry.size} bytes, ${s.numel} × ${s.dtype} needs ${want}`);
    return entry;
  }

  private global(module: string, name: string): unknown {
    if (module === 'collections' && name === 'OrderedDict') return () => new Map();
    if (module === 'torch._utils' && (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor_v3')) return (a: unknown[]) => this.rebuildTensor(a, name);
    if (module === 'torch._utils' && (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state')) {
      return (a: unknown[]) => (a[0] instanceof TorchTensor ? a[0] : this.refuse(`${name} of something that is not a tensor`));
    }
    if (module === 'torch' && name in TORCH_STORAGE_TYPES) return new TorchGlobal(name);
    if (module === 'torch' && Object.values(TORCH_STORAGE_TYPES).some((t) => t.dtype === name)) return new TorchGlobal(name);
    if (module === 'torch' && name.endsWith('Storage')) return this.refuse(`unknown storage type torch.${name}`);
    return this.refuse(`unknown global ${module}.${name} in data.pkl`);
  }

  private persistent(pid: unknown): TorchStorage {
    const items = pid instanceof PyTuple ? pid.items : [];
    const [kind, type, key, location, numel] = items;
    if (kind !== 'storage' || items.length !== 5) this.refuse(`a persistent id that is not a storage (${String(kind)})`);
    if (!(type instanceof TorchGlobal) || !(type.name in TORCH_STORAGE_TYPES)) this.refuse('a storage of unknown type');
    if (typeof key !== 'string' || typeof location !== 'string' || typeof numel !== 'number') this.refuse(`storage ${String(key)} is described badly`);
    const known = this.storages.get(key as string);
    if (known) return known;
    const s = new TorchStorage((type as TorchGlobal).name as TorchStorageType, key as string, location as string, numel as number);
    this.storages.set(s.key, s);
    return s;
  }

  private rebuildTensor(a: unknown[], fn: string): TorchTensor {
    const [storage, offset, size, stride] = a;
    const ints = (v: unknown) => (v instanceof PyTuple && v.items.every((x) => Number.isInteger(x)) ? (v.items as number[]) : undefined);
    if (!(storage instanceof TorchStorage) || !Number.isInteger(offset) || !ints(size) || !ints(stride) || ints(size)!.length !== ints(stride)!.length) {
      this.refuse(`${fn} with arguments this reader does not understand`);
    }
    if (fn === '_rebuild_tensor_v3' && (a[6] as TorchGlobal | undefined)?.name !== (storage as TorchStorage).dtype) this.refuse(`${fn}: a dtype unlike its storage's`);
    return new TorchTensor(storage as TorchStorage, offset as number, ints(size)!, ints(stride)!);
  }

  private refuse(what: string): never {
    throw new CommvqError(`${this.path}: ${what}`, 'this reader follows torch.save files of dicts, lists, numbers and tensors');
  }
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d]! !== 1 && stride[d]! !== expect) return false;
    expect *= shape[d]!;
  }
  return true;
}

const FLOAT_DECODERS: Partial<Record<TorchDType, (b: Uint8Array) => Float32Array>> = {
  float32: (b) => toFloat32Array(viewBytes(b, 'f32'), 'f32'),
  float64: (b) => Float32Array.from(new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))),
  bfloat16: (b) => toFloat32Array(viewBytes(b, 'bf16'), 'bf16'),
  float16: (b) => toFloat32Array(viewBytes(b, 'f16'), 'f16'),
};

/** The archive folder torch.save uses for a file: its base name without the extension ('000_0' for '000_0.pt'). */
export function torchArchiveName(path: string): string {
  const base = basename(path);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}
