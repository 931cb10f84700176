/**
 * A Python pickle reader for data files (no code runs): the opcodes of protocols 2–4 that data pickles use —
 * `torch.save` writes protocol 2 — with globals and persistent ids resolved by the caller. Python values become:
 * None → null, bool, int → number (bigint past 2^53), float → number, str → string, bytes → Uint8Array,
 * list → array, tuple → PyTuple, dict → Map. An opcode outside this set, or a global the caller does not know, is
 * one line naming the byte offset: the file is refused, never half-read.
 *
 *   const obj = unpickle(bytes, { global: (m, n) => lookup(m, n), persistent: (pid) => storage(pid) });
 */
import { CommvqError } from '../errors.js';

/** A Python tuple (kept apart from lists: torch's persistent ids and tensor arguments are tuples). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A callable a global resolves to: REDUCE calls it with the argument tuple's items. */
export type PyCallable = (args: unknown[]) => unknown;

export interface UnpickleHooks {
  /** `module.name` → a value (a PyCallable for anything REDUCE calls); throw for names the file may not use */
  global(module: string, name: string): unknown;
  /** BINPERSID: the persistent id (a PyTuple for torch) → the object it stands for */
  persistent(pid: unknown): unknown;
}

const MARK = Symbol('mark');

/** Reads one pickle; `source` names the file in errors. */
export function unpickle(bytes: Uint8Array, hooks: UnpickleHooks, source = 'pickle'): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder('utf-8', { fatal: true });
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const fail = (what: string): never => {
    throw new CommvqError(`${source}: ${what} at byte ${p}`);
  };
  const need = (n: number) => {
    if (p + n > bytes.length) fail('the pickle ends early (truncated?)');
  };
  const u8 = () => (need(1), bytes[p++]!);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const u64 = () => (need(8), (p += 8), Number(view.getBigUint64(p - 8, true)));
  const take = (n: number) => (need(n), (p += n), bytes.subarray(p - n, p));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) fail('a text line without its newline');
    const s = new TextDecoder('latin1').decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = () => (stack.length === 0 ? fail('pop from an empty stack') : stack.pop());
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail('no MARK on the stack');
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const top = () => (stack.length === 0 ? fail('empty stack') : stack[stack.length - 1]);
  const call = (f: unknown, args: unknown) => {
    if (typeof f !== 'function') fail('REDUCE of something that is not callable');
    if (!(args instanceof PyTuple)) fail('REDUCE arguments are not a tuple');
    return (f as PyCallable)((args as PyTuple).items);
  };
  const setItems = (d: unknown, kv: unknown[]) => {
    if (!(d instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    for (let i = 0; i + 1 < kv.length; i += 2) (d as Map<unknown, unknown>).set(kv[i], kv[i + 1]);
  };
  const appendAll = (l: unknown, items: unknown[]) => {
    if (!Array.isArray(l)) fail('APPEND(S) on something that is not a list');
    (l as unknown[]).push(...items);
  };
  const long = (b: Uint8Array): number | bigint => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length > 0 && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME (protocol 4): the bytes follow in line
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: stack.push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push(new PyTuple([pop(), b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push(new PyTuple([pop(), b, c])); break; } // TUPLE3
      case 0x4a: stack.push((need(4), (p += 4), view.getInt32(p - 4, true))); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(long(take(u8()))); break; // LONG1
      case 0x8b: stack.push(long(take(u32()))); break; // LONG4
      case 0x47: stack.push((need(8), (p += 8), view.getFloat64(p - 8, false))); break; // BINFLOAT (big-endian)
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x58: stack.push(decode(text, take(u32()), fail)); break; // BINUNICODE
      case 0x8c: stack.push(decode(text, take(u8()), fail)); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(decode(text, take(u64()), fail)); break; // BINUNICODE8
      case 0x54: stack.push(new TextDecoder('latin1').decode(take(u32()))); break; // BINSTRING (py2 str)
      case 0x55: stack.push(new TextDecoder('latin1').decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: { const k = u8(); stack.push(memo.has(k) ? memo.get(k) : fail(`BINGET of unset memo ${k}`)); break; }
      case 0x6a: { const k = u32(); stack.push(memo.has(k) ? memo.get(k) : fail(`LONG_BINGET of unset memo ${k}`)); break; }
      case 0x61: { const v = pop(); appendAll(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendAll(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS
      case 0x63: { const module = line(); stack.push(hooks.global(module, line())); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); stack.push(hooks.global(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x52: { const args = pop(); stack.push(call(pop(), args)); break; } // REDUCE
      case 0x81: { const args = pop(); stack.push(call(pop(), args)); break; } // NEWOBJ: cls(*args) for the classes a caller allows
      case 0x51: stack.push(hooks.persistent(pop())); break; // BINPERSID
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x62: fail('BUILD (object state) is not used by the files this reads'); break;
      default: p--; fail(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function decode(text: TextDecoder, b: Uint8Array, fail: (what: string) => never): string {
  try {
    return text.decode(b);
  } catch {
    return fail('a string that is not UTF-8');
  }
}
