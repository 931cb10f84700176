/**
 * The pickle reader and writer against CPython's own pickles. The hex strings were written by CPython 3.11's
 * pickle.Pickler (protocol 2) — the second with stand-in classes named torch.FloatStorage and
 * torch._utils._rebuild_tensor_v2, a persistent_id returning ('storage', FloatStorage, key, 'cpu', numel) and tensors
 * reducing to _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()), as torch.save pickles them.
 */
import { describe, expect, it } from 'vitest';
import { PyTuple, unpickle, type UnpickleHooks } from '../../src/core/io/pickle.js';
import { pickle, PyFloat, PyGlobal, PyPersistent, PyReduce, type PyValue } from '../../src/core/io/pickle-writer.js';

// pickle.dumps({'a': [1, 2.5, (3, 'x'), -7, 70000, 2**40, None, True, False], 'b': (1, 2, 3, 4), 'c': 'é'}, protocol=2)
const PLAIN =
  '80027d71002858010000006171015d7102284b014740040000000000004b0358010000007871038671044af9ffffff4a701101008a060000000000014e8889655801000000627105284b014b024b034b0474710658010000006371075802000000c3a97108752e';

// {'final_error': 0.125, 'steps': [{mse_loss: [], theta: [4, 2], clustering_centers: [4, 4]} × 2]}, storages '0'…'5'
const TORCH_LIKE =
  '80027d710028580b00000066696e616c5f6572726f727101473fc00000000000005805000000737465707371025d7103287d71042858080000006d73655f6c6f7373710563746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71062828580700000073746f72616765710763746f7263680a466c6f617453746f726167650a710858010000003071095803000000637075710a4b0174710b514b0029298963636f6c6c656374696f6e730a4f726465726564446963740a710c2952710d74710e52710f58050000007468657461711068062828680768085801000000317111680a4b08747112514b004b044b028671134b024b0186711489680c295271157471165271175812000000636c7573746572696e675f63656e74657273711868062828680768085801000000327119680a4b1074711a514b004b044b0486711b4b044b0186711c89680c2952711d74711e52711f757d712028680568062828680768085801000000337121680a4b01747122514b00292989680c29527123747124527125681068062828680768085801000000347126680a4b08747127514b004b044b028671284b024b0186712989680c2952712a74712b52712c68186806282868076808580100000035712d680a4b1074712e514b004b044b0486712f4b044b0186713089680c295271317471325271337565752e';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const noHooks: UnpickleHooks = {
  global: (m, n) => { throw new Error(`no global ${m}.${n}`); },
  persistent: () => { throw new Error('no persistent ids'); },
};

function tensorValue(key: string, shape: number[]): PyValue {
  const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const numel = shape.reduce((a, b) => a * b, 1);
  const storage = new PyPersistent(new PyTuple(['storage', new PyGlobal('torch', 'FloatStorage'), key, 'cpu', numel]));
  return new PyReduce(new PyGlobal('torch._utils', '_rebuild_tensor_v2'), new PyTuple([storage, 0, new PyTuple(shape), new PyTuple(stride), false, new PyReduce(new PyGlobal('collections', 'OrderedDict'), new PyTuple([]))]));
}

describe('pickle', () => {
  it('reads CPython protocol-2 values: ints of every width, floats, None, bools, tuples, unicode', () => {
    const v = unpickle(bytes(PLAIN), noHooks) as Map<string, unknown>;
    const a = v.get('a') as unknown[];
    expect(a.slice(0, 2)).toEqual([1, 2.5]);
    expect((a[2] as PyTuple).items).toEqual([3, 'x']);
    expect(a.slice(3)).toEqual([-7, 70000, 2 ** 40, null, true, false]);
    expect((v.get('b') as PyTuple).items).toEqual([1, 2, 3, 4]);
    expect(v.get('c')).toBe('é');
  });

  it("writes CPython's bytes for the same values", () => {
    const value: PyValue = new Map<string, PyValue>([
      ['a', [1, new PyFloat(2.5), new PyTuple([3, 'x']), -7, 70000, 2 ** 40, null, true, false]],
      ['b', new PyTuple([1, 2, 3, 4])],
      ['c', 'é'],
    ]);
    expect(hex(pickle(value))).toBe(PLAIN);
  });

  it("writes CPython's bytes for torch.save's object graph (memoized strings and globals, persistent ids, reduces)", () => {
    let key = 0;
    const step = () => new Map<string, PyValue>([['mse_loss', tensorValue(String(key++), [])], ['theta', tensorValue(String(key++), [4, 2])], ['clustering_centers', tensorValue(String(key++), [4, 4])]]);
    const value = new Map<string, PyValue>([['final_error', new PyFloat(0.125)], ['steps', [step(), step()]]]);
    expect(hex(pickle(value))).toBe(TORCH_LIKE);
  });

  it('reads it back through the hooks: globals called by REDUCE, persistent ids resolved', () => {
    const seen: string[] = [];
    const v = unpickle(bytes(TORCH_LIKE), {
      global: (m, n) => (seen.push(`${m}.${n}`), (args: unknown[]) => ({ fn: n, args })),
      persistent: (pid) => ({ pid: (pid as PyTuple).items.filter((x) => typeof x === 'string' || typeof x === 'number') }),
    }) as Map<string, unknown>;
    expect(v.get('final_error')).toBe(0.125);
    const theta = ((v.get('steps') as Map<string, unknown>[])[1]!.get('theta')) as { fn: string; args: unknown[] };
    expect(theta.fn).toBe('_rebuild_tensor_v2');
    expect(theta.args[0]).toEqual({ pid: ['storage', '4', 'cpu', 8] });
    expect((theta.args[2] as PyTuple).items).toEqual([4, 2]);
    expect(new Set(seen)).toEqual(new Set(['torch._utils._rebuild_tensor_v2', 'torch.FloatStorage', 'collections.OrderedDict']));
  });

  it('refuses an unknown opcode and a cut pickle in one line naming the byte', () => {
    const bad = bytes(PLAIN);
    bad[2] = 0xfe;
    expect(() => unpickle(bad, noHooks, 'x.pkl')).toThrow(/^x\.pkl: unknown pickle opcode 0xfe at byte 2$/);
    expect(() => unpickle(bytes(PLAIN).subarray(0, 40), noHooks, 'x.pkl')).toThrow(/x\.pkl: the pickle ends early \(truncated\?\) at byte/);
  });
});
