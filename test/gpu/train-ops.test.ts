/**
 * Every TrainOps method of CudaTrainOps against CpuTrainOps (the plain-loop reference) on fresh random inputs, several
 * shapes each, odd sizes included; every GPU output is checked for NaN/Inf. The CPU sums in f64 and stores f32; the
 * GPU works in f32 (and bf16 where a comment says), so each bound is `atol + |ref|·eps` with eps written next to the
 * precision the kernel uses. A failure prints the seed (replay with COMMVQ_TEST_SEED), the largest error and the first
 * mismatches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import type { DType } from '../../src/core/tensor/dtype.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { CpuTrainOps } from '../../src/core/values/cpu-train-ops.js';
import { CudaTrainOps } from '../../src/core/values/cuda-train-ops.js';
import { gumbelNoise } from '../../src/core/values/train-ops.js';
import { BF16_EPS, checkClose, nonFinite, randomBf16, relBound, Rng, SEED } from './gpu-helpers.js';

const gpu = cudaAvailable();
const F32_EPS = 2 ** -24;

describe.skipIf(!gpu)(`CudaTrainOps vs CpuTrainOps (${gpu ? `seed ${SEED}` : 'skipped: no CUDA driver or GPU here'})`, () => {
  let cuda: CudaBackend;
  let ops: CudaTrainOps;
  const cpu = new CpuBackend();
  const ref = new CpuTrainOps(cpu);
  const rng = new Rng(SEED);
  const held: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (held.push(t), t);

  beforeAll(() => {
    cuda = CudaBackend.create(0);
    ops = new CudaTrainOps(cuda);
  });
  afterAll(() => {
    for (const t of held.splice(0)) t.dispose();
    ops?.dispose();
    cuda?.dispose();
  });

  /** The same values on both backends: f32 on the CPU, `dtype` on the GPU (use bf16-exact values for bf16). */
  const pair = (values: Float32Array, shape: number[], dtype: DType = 'f32'): [Tensor, Tensor] => [
    keep(cpu.fromArray(values, shape, 'f32')),
    keep(cuda.fromArray(values, shape, dtype)),
  ];
  const host = (t: Tensor): Float32Array => cpu.toFloat32(keep(t));
  /** The GPU tensor as f32, after checking it holds no NaN/Inf. */
  const read = (t: Tensor): Float32Array => {
    const v = cuda.toFloat32(keep(t));
    expect(nonFinite(v), `NaN/Inf in GPU output (seed ${SEED})`).toEqual([]);
    return v;
  };
  const ok = (msg: string | null): void => expect(msg, msg ?? '').toBeNull();
  const normal = (n: number, scale = 1, offset = 0): Float32Array => Float32Array.from({ length: n }, () => offset + scale * rng.normal());
  const positive = (n: number, lo = 0.1, hi = 2): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
  const abs = (x: Float32Array): Float32Array => x.map(Math.abs);

  describe.each([
    // bf16: both inputs rounded to bf16 (8 significant bits: relative 2^-8 each) → 2^-7·Σ|a·b|; f32 accumulation
    // adds ≤ K·2^-24·Σ|a·b|
    ['bf16', 2 ** -7],
    // TF32: 10 mantissa bits per input (2^-11 each if rounded, 2^-10 if truncated) → 2^-9·Σ|a·b|
    ['tf32', 2 ** -9],
    // the fallback kernel (COMMVQ_GEMM=fallback, f32 inputs): exact products, f32 accumulation only
    ['fallback', 0],
  ] as const)('matmul (%s)', (mode, inputEps) => {
    let mm: CudaTrainOps;
    beforeAll(() => {
      if (mode === 'fallback') process.env['COMMVQ_GEMM'] = 'fallback';
      mm = mode === 'bf16' ? ops : new CudaTrainOps(cuda, { matmul: mode === 'fallback' ? 'tf32' : mode });
      mm.matmul(keep(cuda.fromArray([1], [1, 1], 'f32')), keep(cuda.fromArray([1], [1, 1], 'f32'))).dispose(); // picks the GEMM
      delete process.env['COMMVQ_GEMM'];
    });
    afterAll(() => {
      if (mm !== ops) mm.dispose();
    });

    const shapes = [[1, 1, 1], [7, 13, 5], [33, 70, 129], [128, 256, 64], [257, 1024, 96]] as const;
    it.each(shapes)('M=%i K=%i N=%i, every transpose, with and without accumulate', (M, K, N) => {
      const combos = M * K * N > 1e6 ? [[false, true], [true, false]] : [[false, false], [false, true], [true, false], [true, true]];
      for (const [transA, transB] of combos as [boolean, boolean][]) {
        const a = normal(M * K);
        const b = normal(K * N, 0.5);
        const [ca, ga] = pair(a, transA ? [K, M] : [M, K]);
        const [cb, gb] = pair(b, transB ? [N, K] : [K, N]);
        const o = { transA, transB };
        const want = host(ref.matmul(ca, cb, o));
        const sumAbs = host(ref.matmul(keep(cpu.fromArray(abs(a), ca.shape, 'f32')), keep(cpu.fromArray(abs(b), cb.shape, 'f32')), o));
        const eps = inputEps + K * F32_EPS;
        const what = `matmul ${mode} M=${M} K=${K} N=${N} transA=${transA} transB=${transB}`;
        const got = mm.matmul(ga, gb, o);
        expect(got.shape).toEqual([M, N]);
        ok(checkClose(what, read(got), want, (i) => 1e-6 + eps * sumAbs[i]!));
        // accumulate: c + a·b into c, in place (one more f32 rounding of |c + a·b|)
        const c0 = normal(M * N);
        const [, gc] = pair(c0, [M, N]);
        const wantAcc = host(ref.matmul(ca, cb, { ...o, accumulate: keep(cpu.fromArray(c0, [M, N], 'f32')) }));
        expect(mm.matmul(ga, gb, { ...o, accumulate: gc })).toBe(gc);
        ok(checkClose(`${what} accumulate`, read(gc), wantAcc, (i) => 1e-6 + eps * sumAbs[i]! + 2 * F32_EPS * Math.abs(wantAcc[i]!)));
      }
    });

    it('takes bf16 operands as they are (values bf16-exact on both sides)', () => {
      const [M, K, N] = [19, 40, 23];
      const a = randomBf16(rng, M * K);
      const b = randomBf16(rng, K * N);
      const [ca, ga] = pair(a, [M, K], 'bf16');
      const [cb, gb] = pair(b, [K, N], 'bf16');
      const want = host(ref.matmul(ca, cb));
      const sumAbs = host(ref.matmul(keep(cpu.fromArray(abs(a), [M, K], 'f32')), keep(cpu.fromArray(abs(b), [K, N], 'f32'))));
      ok(checkClose(`matmul ${mode} bf16 operands`, read(mm.matmul(ga, gb)), want, (i) => 1e-6 + (inputEps + K * F32_EPS) * sumAbs[i]!));
    });
  });

  it('addBias: one f32 addition, exact; f32 and bf16 x', () => {
    for (const [R, C] of [[1, 1], [5, 7], [64, 1030], [3, 4096]] as const) {
      for (const dtype of ['f32', 'bf16'] as const) {
        const [cx, gx] = pair(randomBf16(rng, R * C, 2), [R, C], dtype);
        const [cb, gb] = pair(normal(C), [C]);
        const want = host(ref.addBias(cx, cb));
        ok(checkClose(`addBias ${dtype} R=${R} C=${C}`, read(ops.addBias(gx, gb)), want, relBound(want, 0, F32_EPS)));
      }
    }
  });

  it('sumRowsInto: f32 sums within a row slice, f64 across slices → 2^-22·Σ|x|; deterministic', () => {
    for (const [R, C] of [[1, 1], [3, 5], [1000, 37], [8192, 64], [100, 4096]] as const) {
      const x = normal(R * C);
      const [cx, gx] = pair(x, [R, C]);
      const init = normal(C);
      const [ci, gi] = pair(init, [C]);
      ref.sumRowsInto(cx, ci);
      ops.sumRowsInto(gx, gi);
      const colAbs = new Float64Array(C);
      for (let i = 0; i < x.length; i++) colAbs[i % C] += Math.abs(x[i]!);
      const want = host(ci);
      const got = read(gi);
      ok(checkClose(`sumRowsInto R=${R} C=${C}`, got, want, (c) => 1e-6 + 2 ** -22 * (colAbs[c]! + Math.abs(init[c]!))));
      const again = keep(cuda.fromArray(init, [C], 'f32'));
      ops.sumRowsInto(gx, again);
      expect(Array.from(read(again)), 'sumRowsInto is deterministic').toEqual(Array.from(got));
    }
  });

  it('prescale: f32 divisions and a block sum of squares → 2^-18 relative; v f32, bf16 or f16', () => {
    for (const [T, D] of [[1, 8], [5, 1024], [33, 37]] as const) {
      for (const dtype of ['f32', 'bf16', 'f16'] as const) {
        const [cv, gv] = pair(randomBf16(rng, T * D, 3), [T, D], dtype === 'f32' ? 'f32' : dtype);
        const [cl, gl] = pair(positive(D), [D]);
        // f16 storage rounds v (2^-11): compare against the CPU on the GPU's own f16 values
        const cvIn = dtype === 'f16' ? keep(cpu.fromArray(cuda.toFloat32(gv), [T, D], 'f32')) : cv;
        const want = ref.prescale(cvIn, cl);
        const got = ops.prescale(gv, gl);
        const wu = host(want.uhat);
        const wr = host(want.rho);
        ok(checkClose(`prescale uhat ${dtype} T=${T} D=${D}`, read(got.uhat), wu, relBound(wu, 1e-7, 2 ** -18)));
        ok(checkClose(`prescale rho ${dtype} T=${T} D=${D}`, read(got.rho), wr, relBound(wr, 1e-7, 2 ** -18)));
      }
    }
  });

  it('layerNorm: two-pass f32 mean and variance → atol 2e-5 (x̂), 5e-5 (y) + 2^-16 relative; param grads → 2^-21·Σ|terms|', () => {
    for (const [R, C, eps] of [[1, 5, 1e-5], [4, 1024, 1e-5], [7, 37, 1e-3], [300, 129, 1e-5]] as const) {
      const [cx, gx] = pair(normal(R * C, 2, 1.5), [R, C]);
      const [cg, gg] = pair(normal(C, 0.3, 1), [C]);
      const [cb, gb] = pair(normal(C, 0.3), [C]);
      const want = ref.layerNorm(cx, cg, cb, eps);
      const got = ops.layerNorm(gx, gg, gb, eps);
      const wy = host(want.y);
      const wh = host(want.xhat);
      ok(checkClose(`layerNorm y R=${R} C=${C}`, read(got.y), wy, relBound(wy, 5e-5, 2 ** -16)));
      ok(checkClose(`layerNorm xhat R=${R} C=${C}`, read(got.xhat), wh, relBound(wh, 2e-5, 2 ** -16)));

      const dy = normal(R * C);
      const [cdy, gdy] = pair(dy, [R, C]);
      const g0 = normal(C);
      const b0 = normal(C);
      const [cdg, gdg] = pair(g0, [C]);
      const [cdb, gdb] = pair(b0, [C]);
      ref.layerNormParamGrad(cdy, want.xhat, cdg, cdb);
      ops.layerNormParamGrad(gdy, keep(cuda.fromArray(wh, [R, C], 'f32')), gdg, gdb);
      const sg = new Float64Array(C);
      const sb = new Float64Array(C);
      for (let i = 0; i < dy.length; i++) {
        sg[i % C] += Math.abs(dy[i]! * wh[i]!);
        sb[i % C] += Math.abs(dy[i]!);
      }
      ok(checkClose(`layerNormParamGrad dGamma R=${R} C=${C}`, read(gdg), host(cdg), (c) => 1e-6 + 2 ** -21 * (sg[c]! + Math.abs(g0[c]!))));
      ok(checkClose(`layerNormParamGrad dBeta R=${R} C=${C}`, read(gdb), host(cdb), (c) => 1e-6 + 2 ** -21 * (sb[c]! + Math.abs(b0[c]!))));
    }
  });

  it('gelu and its backward: CUDA normcdff (a few ulp) against the CPU erf (|err| < 1.2e-7 in Φ)', () => {
    for (const n of [1, 7, 1000, 65537]) {
      const x = normal(n, 3);
      const dy = normal(n);
      const [cx, gx] = pair(x, [n]);
      const [cd, gd] = pair(dy, [n]);
      const y = host(ref.gelu(cx));
      ok(checkClose(`gelu n=${n}`, read(ops.gelu(gx)), y, (i) => 4e-7 * (1 + Math.abs(x[i]!)) + 2 ** -20 * Math.abs(y[i]!)));
      const dx = host(ref.geluBackward(cd, cx));
      ok(checkClose(`geluBackward n=${n}`, read(ops.geluBackward(gd, gx)), dx, (i) => 4e-7 * Math.abs(dy[i]!) * (1 + Math.abs(x[i]!)) + 2 ** -20 * Math.abs(dx[i]!)));
    }
  });

  it('gumbelBits: the same categories as the CPU except at near-ties of the top two z; soft to f32 rounding', () => {
    const cases = [
      [1, 4, 1, false], [7, 36, 1, false], [64, 2048, 1, false], [33, 1028, 0.7, false], [64, 2048, 1, true], [5, 16, 0.5, true],
    ] as const;
    let exempt = 0;
    let groupsSeen = 0;
    for (const [T, W, tau, argmax] of cases) {
      const logits = normal(T * W, 2);
      const [cl, gl] = pair(logits, [T, W]);
      const seeded = { seed: rng.int(2 ** 31), stream: rng.int(2 ** 20) };
      const noise = argmax ? ('argmax' as const) : seeded;
      const want = ref.gumbelBits(cl, tau, noise);
      const got = ops.gumbelBits(gl, tau, noise);
      expect(got.bits.shape).toEqual([T, W / 2]);
      const wb = host(want.bits);
      const gb = read(got.bits);
      const ws = host(want.soft);
      const gs = read(got.soft);
      const bad: string[] = [];
      for (let g = 0; g < (T * W) / 4; g++) {
        groupsSeen++;
        if (wb[2 * g] === gb[2 * g] && wb[2 * g + 1] === gb[2 * g + 1]) continue;
        const z = [0, 1, 2, 3].map((c) => (logits[4 * g + c]! + (argmax ? 0 : gumbelNoise(seeded.seed, seeded.stream, 4 * g + c))) / tau);
        const [first, second] = [...z].sort((p, q) => q - p);
        if (first! - second! <= 1e-6 * (1 + Math.abs(first!))) exempt++;
        else if (bad.length < 5) bad.push(`group ${g}: z ${z.map((v) => v.toFixed(7))}, cpu bits ${wb[2 * g]}${wb[2 * g + 1]}, gpu ${gb[2 * g]}${gb[2 * g + 1]}`);
      }
      expect(bad, `gumbelBits T=${T} W=${W} τ=${tau} ${argmax ? 'argmax' : 'noise'} (seed ${SEED})`).toEqual([]);
      ok(checkClose(`gumbelBits soft T=${T} W=${W}`, gs, ws, relBound(ws, 1e-7, 4 * F32_EPS)));
    }
    expect(exempt, 'near-tie exemptions').toBeLessThanOrEqual(Math.ceil(groupsSeen * 1e-3));
  });

  it('gumbelBitsBackward: f32 per group, accumulated into dLogits → 2^-20 relative', () => {
    for (const [T, W, tau] of [[1, 4, 1], [9, 44, 0.7], [128, 2048, 1]] as const) {
      const [cl] = pair(normal(T * W, 2), [T, W]);
      const soft = host(ref.gumbelBits(cl, tau, { seed: 1, stream: 2 }).soft);
      const [cs, gs] = pair(soft, [T, W]);
      const [cdb, gdb] = pair(normal((T * W) / 2), [T, W / 2]);
      const d0 = normal(T * W, 0.1);
      const [cdl, gdl] = pair(d0, [T, W]);
      ref.gumbelBitsBackward(cdb, cs, tau, cdl);
      ops.gumbelBitsBackward(gdb, gs, tau, gdl);
      const want = host(cdl);
      ok(checkClose(`gumbelBitsBackward T=${T} W=${W}`, read(gdl), want, relBound(want, 1e-6, 2 ** -20)));
    }
  });

  it('decode and decodeBackward: f32 norms and dot products (block sums) → 2^-18 relative; a zero w row', () => {
    /** 2^-18·|ref| plus 2e-6 of the largest |ref| of the same token (the row's scale) */
    const rowBound = (want: Float32Array, D: number) => {
      const rowMax = Array.from({ length: want.length / D }, (_, t) => Math.max(...want.subarray(t * D, (t + 1) * D).map(Math.abs)));
      return (i: number): number => 2 ** -18 * Math.abs(want[i]!) + 2e-6 * rowMax[Math.floor(i / D)]!;
    };
    for (const [T, D] of [[1, 8], [9, 1024], [17, 37]] as const) {
      const w = normal(T * D, 3);
      if (T > 1) w.fill(0, 0, D); // ‖w‖ = 0: decode gives 0, the backward's radial term is 0 (and α = (ρ + 1e-6)/1e-6)
      const [cw, gw] = pair(w, [T, D]);
      const [cr, gr] = pair(positive(T, 0.5, 20), [T]);
      const [cl, gl] = pair(positive(D), [D]);
      const want = host(ref.decode(cw, cr, cl));
      ok(checkClose(`decode T=${T} D=${D}`, read(ops.decode(gw, gr, gl)), want, rowBound(want, D)));
      const [cd, gd] = pair(normal(T * D), [T, D]);
      const dw = host(ref.decodeBackward(cd, cw, cr, cl));
      ok(checkClose(`decodeBackward T=${T} D=${D}`, read(ops.decodeBackward(gd, gw, gr, gl)), dw, rowBound(dw, D)));
    }
  });

  it('squaredError and sumSquares: f64 sums of f32 differences → 2^-22 relative; the gradient 2^-22; deterministic', () => {
    for (const n of [1, 5, 1000, 300001]) {
      for (const [ta, tb] of [['f32', 'f32'], ['bf16', 'f32'], ['f32', 'bf16'], ['bf16', 'bf16']] as const) {
        const [ca, ga] = pair(randomBf16(rng, n, 2), [n], ta);
        const [cb, gb] = pair(randomBf16(rng, n, 2, 0.3), [n], tb);
        const scale = 1 / (n * 3);
        const want = ref.squaredError(ca, cb, scale);
        const got = ops.squaredError(ga, gb, scale);
        expect(Math.abs(got.sum - want.sum), `squaredError sum ${ta}/${tb} n=${n} (seed ${SEED})`).toBeLessThanOrEqual(2 ** -22 * want.sum + 1e-12);
        const wg = host(want.grad!);
        ok(checkClose(`squaredError grad ${ta}/${tb} n=${n}`, read(got.grad!), wg, relBound(wg, 1e-12, 2 ** -22)));
        expect(ops.squaredError(ga, gb).sum, 'squaredError is deterministic').toBe(got.sum);
        const ss = ref.sumSquares(ca);
        expect(Math.abs(ops.sumSquares(ga) - ss), `sumSquares ${ta} n=${n}`).toBeLessThanOrEqual(2 ** -40 * ss + 1e-12);
      }
    }
  });

  it("scaleInPlace: s rounded to f32 (the kernel argument), then one f32 multiplication, vs the CPU's single rounding: 3 roundings → 2^-22 relative", () => {
    for (const n of [1, 7, 100003]) {
      const x = normal(n);
      const [cx, gx] = pair(x, [n]);
      ref.scaleInPlace(cx, 0.37);
      ops.scaleInPlace(gx, 0.37);
      ok(checkClose(`scaleInPlace n=${n}`, read(gx), host(cx), relBound(host(cx), 0, 4 * F32_EPS)));
    }
  });

  it('adamw: f32 arithmetic over several steps → 2^-19 relative on p, m, v', () => {
    for (const n of [1, 33, 100000]) {
      const p = normal(n, 0.5);
      const [cp, gp] = pair(p, [n]);
      const [cm, gm] = pair(new Float32Array(n), [n]);
      const [cv, gv] = pair(new Float32Array(n), [n]);
      for (const step of [1, 2, 3, 10]) {
        const [cg, gg] = pair(normal(n, 0.01), [n]);
        const o = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
        ref.adamw(cp, cg, cm, cv, o);
        ops.adamw(gp, gg, gm, gv, o);
        for (const [name, c, g] of [['p', cp, gp], ['m', cm, gm], ['v', cv, gv]] as const) {
          const want = host(c);
          ok(checkClose(`adamw ${name} n=${n} step=${step}`, read(g), want, relBound(want, 4e-9, 2 ** -19)));
        }
      }
    }
  });

  describe('attentionValueGrad (flash style, P recomputed)', () => {
    // P and dOut enter the tensor cores in bf16 (relative 2^-8 each) → 2·2^-8·Σ_i P_ij·|dOut_i| with margin; scores
    // and sums are f32 from bf16-exact q and k.
    it.each([
      // Hq, Hkv, D, Tq, qStart, kvLength
      [4, 2, 64, 1, 0, 1],
      [4, 2, 64, 37, 0, 37],
      [4, 1, 64, 200, 0, 200],
      [8, 2, 128, 130, 0, 130],
      [4, 4, 64, 70, 50, 120], // a chunk after 50 cached rows
      [2, 1, 128, 20, 10, 60], // keys past the last query: never seen, dV 0
      [4, 2, 64, 50, 0, 30], // fewer keys than queries: rows see min(i + 1, kvLength) keys
    ] as const)('Hq=%i Hkv=%i D=%i Tq=%i qStart=%i kvLength=%i', (Hq, Hkv, D, Tq, qStart, kvLength) => {
      const shape = { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart, kvLength };
      const [cq, gq] = pair(randomBf16(rng, Tq * Hq * D, 1.5), [Tq, Hq * D], 'bf16');
      const [ck, gk] = pair(randomBf16(rng, kvLength * Hkv * D), [kvLength, Hkv * D], 'bf16');
      const g = normal(Tq * Hq * D);
      const [cg, gg] = pair(g, [Tq, Hq * D]);
      const want = host(ref.attentionValueGrad(cq, ck, cg, shape));
      const absRef = host(ref.attentionValueGrad(cq, ck, keep(cpu.fromArray(abs(g), [Tq, Hq * D], 'f32')), shape));
      const got = ops.attentionValueGrad(gq, gk, gg, shape);
      expect(got.shape).toEqual([kvLength, Hkv * D]);
      const v = read(got);
      ok(checkClose(`attentionValueGrad ${JSON.stringify(shape)} Tq=${Tq}`, v, want, (i) => 1e-6 + 2 * BF16_EPS * absRef[i]!));
      // f32 q and k (cast on the GPU) give the same bits; so does a second run (no atomics)
      const again = read(ops.attentionValueGrad(keep(cuda.fromArray(host(cq), cq.shape as number[], 'f32')), gk, gg, shape));
      expect(Array.from(again), 'deterministic, f32 q').toEqual(Array.from(v));
    });

    it.each([
      [4, 1, 64, 8192, 32],
      [32, 8, 128, 8192, 4],
    ] as const)('Hq=%i Hkv=%i D=%i T=%i: the last %i key rows exactly, and Σ_j dV_j = Σ_i dOut_i for every key', (Hq, Hkv, D, T, lastKeys) => {
      const shape = { queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart: 0, kvLength: T };
      const q = randomBf16(rng, T * Hq * D);
      const kk = randomBf16(rng, T * Hkv * D);
      const g = normal(T * Hq * D);
      const dv = read(ops.attentionValueGrad(keep(cuda.fromArray(q, [T, Hq * D], 'bf16')), keep(cuda.fromArray(kk, [T, Hkv * D], 'bf16')), keep(cuda.fromArray(g, [T, Hq * D], 'f32')), shape));
      const G = Hq / Hkv;
      const W = Hkv * D;
      // (1) rows of P sum to 1, so Σ_j dV[j, g] = Σ_{i, h ∈ g} dOut[i, h]. The bf16 roundings of P and dOut are
      // unbiased and independent: the error is a random sum with σ ≲ 2^-9·‖dOut column‖₂; the bound is 8σ.
      const colDv = new Float64Array(W);
      const colG = new Float64Array(W);
      const colSq = new Float64Array(W);
      for (let j = 0; j < T; j++) for (let c = 0; c < W; c++) colDv[c] += dv[j * W + c]!;
      for (let i = 0; i < T; i++)
        for (let h = 0; h < Hq; h++)
          for (let c = 0; c < D; c++) {
            const x = g[(i * Hq + h) * D + c]!;
            colG[Math.floor(h / G) * D + c] += x;
            colSq[Math.floor(h / G) * D + c] += x * x;
          }
      ok(checkClose(`attentionValueGrad T=${T} column sums`, colDv, colG, (c) => 1e-3 + 2 ** -6 * Math.sqrt(colSq[c]!)));
      // (2) the last keys, seen only by the last query rows: the softmax of those rows computed here in f64
      const want = new Float64Array(lastKeys * W);
      const wantAbs = new Float64Array(lastKeys * W);
      const s = new Float64Array(T);
      for (let i = T - lastKeys; i < T; i++) {
        for (let h = 0; h < Hq; h++) {
          const hk = Math.floor(h / G);
          let max = -Infinity;
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let c = 0; c < D; c++) dot += q[(i * Hq + h) * D + c]! * kk[(j * Hkv + hk) * D + c]!;
            s[j] = dot / Math.sqrt(D);
            max = Math.max(max, s[j]!);
          }
          let sum = 0;
          for (let j = 0; j <= i; j++) sum += Math.exp(s[j]! - max);
          for (let j = T - lastKeys; j <= i; j++) {
            const p = Math.exp(s[j]! - max) / sum;
            for (let c = 0; c < D; c++) {
              const x = g[(i * Hq + h) * D + c]!;
              want[(j - (T - lastKeys)) * W + hk * D + c] += p * x;
              wantAbs[(j - (T - lastKeys)) * W + hk * D + c] += p * Math.abs(x);
            }
          }
        }
      }
      const got = dv.subarray((T - lastKeys) * W);
      ok(checkClose(`attentionValueGrad T=${T} last ${lastKeys} keys`, got, want, (i) => 1e-6 + 2 * BF16_EPS * wantAbs[i]!));
    });
  });

  it('frees every scratch block: bytes in use return to where they were', () => {
    const [T, D] = [64, 128];
    const v = keep(cuda.fromArray(randomBf16(rng, T * D), [T, D], 'bf16'));
    const ls = keep(cuda.fromArray(positive(D), [D], 'f32'));
    const gs = keep(cuda.zeros([D], 'f32'));
    const gb = keep(cuda.zeros([D], 'f32'));
    const qkv = keep(cuda.fromArray(randomBf16(rng, T * 2 * 64), [T, 2 * 64], 'bf16'));
    ops.matmul(v, v, { transB: true }).dispose(); // the cuBLASLt workspace is made once, at the first matmul
    const before = cuda.memory().bytesInUse;
    const made: Tensor[] = [];
    const { uhat, rho } = ops.prescale(v, ls);
    made.push(uhat, rho, ops.matmul(uhat, v, { transA: true }));
    ops.sumRowsInto(uhat, gs);
    ops.layerNormParamGrad(uhat, uhat, gs, gb);
    ops.squaredError(uhat, v, 1).grad!.dispose();
    ops.sumSquares(uhat);
    made.push(ops.attentionValueGrad(qkv, qkv, uhat, { queryHeads: 2, kvHeads: 2, headDim: 64, qStart: 0, kvLength: T }));
    made.forEach((t) => t.dispose());
    expect(cuda.memory().bytesInUse).toBe(before);
  });
});
