/**
 * The device CommVQ store (src/core/commvq/device-store.ts) op by op against the host store (host-store.ts, the f64
 * reference), both fed the same bf16 rows: encode blocks from held exact slots and from step rows into a sequence
 * that is not the first, read the packed state back, dequantize a prefix, attend one decode step of two sequences,
 * and attend a strict prompt chunk that starts inside a block. What may differ and the bounds: commvq-helpers.ts;
 * packed state: key codes and value bits equal up to near-ties (≤ 1% and ≤ 2%), norms within one bf16 step.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { ropeF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import type { Backend } from '../../src/core/backend/backend.js';
import { unpackBits, unpackCodes12 } from '../../src/core/tensor/code-packing.js';
import { storeSettings } from '../../src/core/commvq/commvq-cache.js';
import type { CommvqStore, EncodePart } from '../../src/core/commvq/commvq-store.js';
import { DeviceCommvqStore } from '../../src/core/commvq/device-store.js';
import { HostCommvqStore } from '../../src/core/commvq/host-store.js';
import type { LayerKV } from '../../src/core/model/llama.js';
import { bf16ToF32 } from '../../src/core/tensor/dtype.js';
import { bf16, D, randomBooks, ROPE, SHAPE, worstError } from './commvq-helpers.js';
import { Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();
const W = 8;
const SINKS = 2;
const Hq = SHAPE.queryHeads * SHAPE.headDim;

/** Both stores over the same settings: 2 sequences, 2 sinks, a window of 8, room for 96 tokens. */
function stores() {
  const settings = storeSettings(SHAPE, { ...randomBooks(SEED), rope: ROPE, window: W, sinks: SINKS, capacity: 96, batch: 2 });
  const cpu = new CpuBackend();
  const cuda = new CudaBackend();
  return { settings, pairs: [[cpu, new HostCommvqStore(cpu, settings)], [cuda, new DeviceCommvqStore(cuda, settings)]] as [Backend, CommvqStore][] };
}

/** T rows of a step at positions start.., the same bf16 numbers for every backend. */
function rows(rng: Rng, start: number, T: number) {
  const positions = Int32Array.from({ length: T }, (_, i) => start + i);
  const kPre = bf16(Float32Array.from({ length: T * D }, () => rng.normal()));
  const host = {
    kPre,
    k: bf16(ropeF32(kPre, positions, ROPE)),
    v: bf16(Float32Array.from({ length: T * D }, () => rng.normal())),
    q: bf16(ropeF32(Float32Array.from({ length: T * Hq }, () => rng.normal()), positions, ROPE)),
  };
  const on = (b: Backend): LayerKV & { q: ReturnType<Backend['fromArray']> } => {
    const t = (a: Float32Array, w: number) => b.fromArray(a, [T, w], b.activationDType);
    return { kPre: t(host.kPre, D), k: t(host.k, D), v: t(host.v, D), q: t(host.q, Hq) };
  };
  return { host, on };
}

/** Sequence 1 of layer 1 holds the sinks (slots 0..1) and 3 blocks of codes: one from the window, two from the step. */
function fill(b: Backend, store: CommvqStore, step: LayerKV & { q: unknown }): void {
  store.keepExact(1, 1, 0, step, 0, SINKS);
  store.keepExact(1, 1, SINKS, step, SINKS, W); // the window: positions 2..9 at slots 2..9
  const parts: EncodePart[] = [
    { sequence: 1, at: 0, slot: SINKS, held: W, row: 0, rows: 0, noise: 'argmax' },
    { sequence: 1, at: W, slot: 0, held: 0, row: SINKS + W, rows: W, noise: 'argmax' },
    { sequence: 1, at: 2 * W, slot: 0, held: 0, row: SINKS + 2 * W, rows: W, noise: 'argmax' },
  ];
  store.encode(1, parts, step);
  store.keepExact(1, 1, SINKS, step, SINKS + 3 * W, 3); // then 3 window tokens: positions 26..28
  b.synchronize();
}

describe.skipIf(!gpu)(`CommVQ device store against the host store (seed ${SEED})`, () => {
  it('encodes blocks from exact slots and step rows into the packed rows of sequence 1, and dequantizes them', () => {
    const { settings, pairs } = stores();
    const step = rows(new Rng(SEED), 0, SINKS + 3 * W + 3);
    const [host, device] = pairs.map(([b, store]) => {
      fill(b, store, step.on(b));
      return { packed: store.packed(1, 1, 3 * W), other: store.packed(1, 0, 3 * W), deq: store.dequantized(1, 1, 3 * W) };
    });
    const RG = settings.residuals * SHAPE.kvHeads;
    const codes = (p: Uint8Array) => Array.from({ length: 3 * W }, (_, t) => Array.from(unpackCodes12(p, RG, t * Math.ceil((RG * 12) / 8)))).flat();
    const [hc, dc] = [codes(host!.packed.keyCodes), codes(device!.packed.keyCodes)];
    expect(hc.filter((c, i) => c !== dc[i]).length, 'key codes that differ (near-ties)').toBeLessThanOrEqual(Math.ceil(0.01 * hc.length));
    for (let t = 0; t < 3 * W; t++) {
      const [a, b] = [bf16ToF32(host!.packed.keyNorms[t]!), bf16ToF32(device!.packed.keyNorms[t]!)];
      expect(Math.abs(a - b), `norm of token ${t}`).toBeLessThanOrEqual(2 ** -7 * Math.abs(a));
    }
    const Nc = settings.options.valueShape.codeBits;
    const [hb, db] = [unpackBits(host!.packed.valueBits, 3 * W * Nc), unpackBits(device!.packed.valueBits, 3 * W * Nc)];
    expect(hb.filter((x, i) => x !== db[i]).length, 'value bits that differ').toBeLessThanOrEqual(Math.ceil(0.02 * hb.length));
    expect(device!.other.keyCodes.every((x) => x === 0), 'sequence 0 untouched').toBe(true);
    expect(worstError(device!.deq.keys, host!.deq.keys).bad, 'dequantized keys').toBeLessThanOrEqual(Math.ceil(0.01 * host!.deq.keys.length));
    expect(worstError(device!.deq.values, host!.deq.values).bad, 'dequantized values').toBeLessThanOrEqual(Math.ceil(0.02 * host!.deq.values.length));
    pairs.forEach(([, s]) => s.dispose());
  });

  it('attends one decode step of two sequences on codes and exact slots', () => {
    const { pairs } = stores();
    const rng = new Rng(SEED + 1);
    const step = rows(rng, 0, SINKS + 3 * W + 3);
    const token = rows(rng, 29, 2); // row 0: sequence 0 at position 0; row 1: sequence 1 at position 29
    const outs = pairs.map(([b, store]) => {
      fill(b, store, step.on(b));
      const t = token.on(b);
      store.keepExact(1, 0, 0, t, 0, 1);
      store.keepExact(1, 1, SINKS + 3, t, 1, 1);
      const tokens = [{ sequence: 0, row: 0, compressed: 0, exact: 1 }, { sequence: 1, row: 1, compressed: 3 * W, exact: SINKS + 4 }];
      return b.toFloat32(store.attendTokens(1, t.q, tokens));
    });
    const { bad, worst } = worstError(outs[1]!, outs[0]!);
    expect(bad, `decode step: worst ${worst.toExponential(2)} of max`).toBe(0);
    pairs.forEach(([, s]) => s.dispose());
  });

  it('attends a strict prompt chunk that starts inside a block, per block of queries', () => {
    const { settings, pairs } = stores();
    const rng = new Rng(SEED + 2);
    const step = rows(rng, 0, SINKS + 3 * W + 3);
    const chunk = rows(rng, 29, 12); // positions 29..40: the rest of block 26..33, block 34..41
    const outs = pairs.map(([b, store]) => {
      fill(b, store, step.on(b));
      const c = chunk.on(b);
      // the chunk compresses block 26..33 (3 window tokens, then 5 of its rows) before its queries attend
      store.encode(1, [{ sequence: 1, at: 3 * W, slot: SINKS, held: 3, row: 0, rows: 5, noise: 'argmax' }], c);
      const blocks = settings.rule.queryBlocks(29, 41);
      return b.toFloat32(store.attendPrompt(1, { sequence: 1, start: 29, end: 41, compressedBefore: 3 * W, blocks }, c.q, c));
    });
    const { bad, worst } = worstError(outs[1]!, outs[0]!);
    expect(bad, `prompt chunk: worst ${worst.toExponential(2)} of max`).toBe(0);
    pairs.forEach(([, s]) => s.dispose());
  });
});
