/**
 * Writes the protocol-2 pickles `torch.save` writes, opcode for opcode as CPython's pickler emits them for the same
 * objects: containers and strings memoized with BINPUT (a repeated string or global is a BINGET), dict items in
 * SETITEM/SETITEMS, list items in APPEND/APPENDS, floats as BINFLOAT, and tensors as a reduce of a global with a
 * persistent id inside. Python values are described with the classes below; a JS number is an int, PyFloat a float.
 *
 *   pickle(new Map([['final_error', new PyFloat(0.1)]]))   // Uint8Array: 80 02 7d 71 00 ...
 */
import { PyTuple } from './pickle.js';

export class PyFloat {
  constructor(readonly value: number) {}
}

/** A module-level name: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

/** `func(*args)` at load time. */
export class PyReduce {
  constructor(
    readonly func: PyGlobal,
    readonly args: PyTuple,
  ) {}
}

/** An object stored outside the pickle (torch: a storage), named by a persistent id tuple. */
export class PyPersistent {
  constructor(readonly pid: PyTuple) {}
}

export type PyValue = null | boolean | number | string | PyFloat | PyTuple | PyValue[] | Map<string, PyValue> | PyGlobal | PyReduce | PyPersistent;

const BATCH = 1000; // CPython's batch size for SETITEMS/APPENDS

/** The pickle of `value`, protocol 2. */
export function pickle(value: PyValue): Uint8Array {
  const out: number[] = [0x80, 2];
  const memo = new Map<unknown, number>();
  const bytes = (b: ArrayLike<number>) => {
    for (let i = 0; i < b.length; i++) out.push(b[i]!);
  };
  const u32 = (n: number) => bytes([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]);
  const put = (key: unknown) => {
    const i = memo.size;
    memo.set(key, i);
    if (i < 256) bytes([0x71, i]);
    else (out.push(0x72), u32(i));
  };
  const get = (key: unknown): boolean => {
    const i = memo.get(key);
    if (i === undefined) return false;
    if (i < 256) bytes([0x68, i]);
    else (out.push(0x6a), u32(i));
    return true;
  };
  const save = (v: PyValue): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (typeof v === 'number') saveInt(v);
    else if (typeof v === 'string') {
      if (get(`s:${v}`)) return;
      const b = Buffer.from(v, 'utf8');
      out.push(0x58);
      u32(b.length);
      bytes(b);
      put(`s:${v}`);
    } else if (v instanceof PyFloat) {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(v.value);
      out.push(0x47);
      bytes(b);
    } else if (v instanceof PyTuple) saveTuple(v);
    else if (Array.isArray(v)) {
      out.push(0x5d);
      put(v);
      batched(v, (item) => save(item), 0x61, 0x65);
    } else if (v instanceof Map) {
      out.push(0x7d);
      put(v);
      batched([...v], ([k, x]) => (save(k), save(x)), 0x73, 0x75);
    } else if (v instanceof PyGlobal) {
      const key = `g:${v.module}.${v.name}`;
      if (get(key)) return;
      out.push(0x63);
      bytes(Buffer.from(`${v.module}\n${v.name}\n`, 'utf8'));
      put(key);
    } else if (v instanceof PyReduce) {
      save(v.func);
      saveTuple(v.args);
      out.push(0x52);
      put(v);
    } else {
      saveTuple(v.pid);
      out.push(0x51);
    }
  };
  const saveInt = (n: number) => {
    if (!Number.isInteger(n)) throw new Error(`pickle: ${n} is not an int (use PyFloat for floats)`);
    if (n >= 0 && n < 256) bytes([0x4b, n]);
    else if (n >= 0 && n < 65536) bytes([0x4d, n & 0xff, n >> 8]);
    else if (n >= -0x80000000 && n <= 0x7fffffff) (out.push(0x4a), u32(n));
    else bytes([0x8a, ...longBytes(BigInt(n))]);
  };
  const saveTuple = (t: PyTuple) => {
    const n = t.items.length;
    if (n === 0) return void out.push(0x29);
    if (n > 3) out.push(0x28);
    for (const item of t.items) save(item as PyValue);
    out.push(n === 1 ? 0x85 : n === 2 ? 0x86 : n === 3 ? 0x87 : 0x74);
    put(t);
  };
  const batched = <T>(items: T[], one: (x: T) => void, single: number, many: number) => {
    for (let i = 0; i < items.length; i += BATCH) {
      const chunk = items.slice(i, i + BATCH);
      if (chunk.length === 1) (one(chunk[0]!), out.push(single));
      else (out.push(0x28), chunk.forEach(one), out.push(many));
    }
  };
  save(value);
  out.push(0x2e);
  return Uint8Array.from(out);
}

/** LONG1's payload: length byte, then two's-complement little-endian bytes. */
function longBytes(v: bigint): number[] {
  const b: number[] = [];
  let x = v;
  const done = () => { const sign = (b[b.length - 1]! & 0x80) !== 0; return (x === 0n && !sign) || (x === -1n && sign); };
  do {
    b.push(Number(x & 0xffn));
    x >>= 8n;
  } while (!done());
  return [b.length, ...b];
}
