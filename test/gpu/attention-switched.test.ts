/**
 * The switched prefill kernel (kernels/attention_prefill.cu attention_prefill_switch_*, the strict CommVQ prompt in
 * one launch) against the CPU reference `attentionF32`: query rows in blocks of 128, each block seeing the keys before
 * its first position from the scratch k/v and its own block's keys, from its first position on, from kx/vx. The
 * reference builds, per block, the key and value rows that block sees and runs plain causal attention over them. Two
 * sources with different numbers make a read from the wrong one show: the scratch rows of the chunk's own positions
 * hold other values than kx/vx. Random bf16 inputs, fresh each run (seed in every message). Tolerance:
 * |gpu − ref| ≤ 2^-7 + |ref|·2^-7: the final rounding to bf16 (2^-9·|ref|, within the relative term) and P rounded to
 * bf16 before P·V (≤ 2^-9 of max|v| per weight; values N(0, 0.3²) stay below 1.5, so ≤ 2^-8; twice that).
 */
import { describe, expect, it } from 'vitest';
import { attentionF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { prefillAttentionSwitched } from '../../src/core/backend/cuda/ops/attention.js';
import { checkClose, randomBf16, relBound, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();

describe.skipIf(!gpu)(`switched prefill attention (seed ${SEED})`, () => {
  // [H_q, H_kv, D_h, qStart, Tq]: whole blocks, a partial last block, GQA 1, 4 and 8, D_h 64 and 128
  const cases: [number, number, number, number, number][] = [
    [4, 1, 64, 0, 128], [8, 2, 64, 256, 300], [32, 8, 128, 384, 256], [8, 8, 128, 128, 200], [16, 2, 128, 1024, 130],
  ];
  it.each(cases)('H_q %i, H_kv %i, D_h %i, queries from %i, %i rows', (Hq, Hkv, D, qStart, Tq) => {
    const cuda = new CudaBackend();
    const rng = new Rng(SEED + qStart + Tq);
    const end = qStart + Tq;
    const F = Hkv * D;
    const scratchK = randomBf16(rng, end * F, 0.5);
    const scratchV = randomBf16(rng, end * F, 0.3);
    const exactK = randomBf16(rng, Tq * F, 0.5); // positions qStart .. end − 1
    const exactV = randomBf16(rng, Tq * F, 0.3);
    const q = randomBf16(rng, Tq * Hq * D, 0.5);
    const t = (a: Float32Array, rows: number, width: number) => cuda.fromArray(a, [rows, width], 'bf16');
    const out = cuda.zeros([Tq, Hq * D], 'bf16');
    prefillAttentionSwitched(cuda.ctx, { q: t(q, Tq, Hq * D), k: t(scratchK, end, F), v: t(scratchV, end, F), kx: t(exactK, Tq, F), vx: t(exactV, Tq, F), out },
      { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength: end }, qStart);
    const got = cuda.toFloat32(out);
    // the reference, block by block: keys before the block from the scratch, the block's own exact
    const want = new Float32Array(Tq * Hq * D);
    for (let b0 = 0; b0 < Tq; b0 += 128) {
      const rows = Math.min(128, Tq - b0);
      const first = qStart + b0;
      const kvLength = first + rows;
      const keys = new Float32Array(kvLength * F);
      const values = new Float32Array(kvLength * F);
      keys.set(scratchK.subarray(0, first * F));
      values.set(scratchV.subarray(0, first * F));
      keys.set(exactK.subarray(b0 * F, (b0 + rows) * F), first * F);
      values.set(exactV.subarray(b0 * F, (b0 + rows) * F), first * F);
      const o = attentionF32(q.subarray(b0 * Hq * D, (b0 + rows) * Hq * D), keys, values, { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart: first, kvLength });
      want.set(o, b0 * Hq * D);
    }
    const msg = checkClose('switched prefill', got, want, relBound(want, 2 ** -7, 2 ** -7));
    expect(msg, msg ?? '').toBeNull();
  });

  it('refuses a qStart that is not a block start, and an exactBase past qStart', () => {
    const cuda = new CudaBackend();
    const z = (rows: number, width: number) => cuda.zeros([rows, width], 'bf16');
    const shape = { queryRows: 128, queryHeads: 4, kvHeads: 1, headDim: 64, qStart: 64, kvLength: 192 };
    const p = { q: z(128, 256), k: z(256, 64), v: z(256, 64), kx: z(128, 64), vx: z(128, 64), out: z(128, 256) };
    expect(() => prefillAttentionSwitched(cuda.ctx, p, shape, 64)).toThrow(/not a multiple of 128/);
    expect(() => prefillAttentionSwitched(cuda.ctx, p, { ...shape, qStart: 128, kvLength: 256 }, 200)).toThrow(/exactBase/);
  });
});
