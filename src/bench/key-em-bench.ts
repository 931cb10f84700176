/**
 * Our side of the key-codebook EM benchmark (scripts/bench/torch_key_em.py times PyTorch beside it): one layer at the
 * reference's scale — 1,048,576 tokens, 8 KV heads of 128, R = 11, 4096 centres, up to 100 EM iterations per stage
 * with the reference's stop rule — on key-like random data made on the GPU (a rank-32 signal plus noise, per-channel
 * scales, normalised per token as §3.2). Wall time of the whole layer (every group, stage, init, E- and M-step and
 * residual update, host round trips included), plus the mean time of one init and of one EM iteration.
 * Prints one JSON object; the PyTorch script reads it to time the same iterations.
 *
 *   npm run build && node dist/bench/key-em-bench.js --tokens 1048576 --residuals 11 > ours.json
 */
import { parseArgs } from 'node:util';
import { CudaBackend } from '../core/backend/cuda/cuda-backend.js';
import type { CudaTensor } from '../core/backend/cuda/cuda-tensor.js';
import { EM_DEFAULTS, streamSeed, trainGroupEm, type EmBackend } from '../core/keys/em.js';
import { GpuEmBackend, GpuKeys } from '../core/keys/gpu/gpu-em.js';
import { SeededRandom } from '../core/model/seeded-random.js';

const { values: args } = parseArgs({
  options: {
    tokens: { type: 'string', default: String(1 << 20) },
    groups: { type: 'string', default: '8' },
    'head-dim': { type: 'string', default: '128' },
    residuals: { type: 'string', default: '11' },
    steps: { type: 'string', default: '100' },
    seed: { type: 'string', default: '0' },
  },
});
const N = Number(args.tokens);
const G = Number(args.groups);
const D = Number(args['head-dim']);
const R = Number(args.residuals);
const cfg = { ...EM_DEFAULTS, maxSteps: Number(args.steps) };

const backend = CudaBackend.create(0);
const { ctx } = backend;

/** Key-like rows [N, G·D] f32 on the GPU, prepared: z [N, 32]·Bᵀ + 0.3·noise, then per-channel scales. */
function makeKeys(): GpuKeys {
  const width = G * D;
  const z = backend.randomTensor([N, 32], 'bf16', { seed: 1 });
  const basis = backend.randomTensor([width, 32], 'bf16', { seed: 2, std: 0.5 });
  const signal = backend.linear(z, basis);
  const noise = backend.randomTensor([N, width], 'bf16', { seed: 3, std: 0.3 });
  const sum = backend.add(signal, noise);
  const raw = backend.cast(sum, 'f32');
  for (const t of [z, basis, signal, noise, sum]) t.dispose();
  const scale = backend.fromArray(Float32Array.from({ length: width }, (_, c) => 0.3 + 2 * Math.abs(Math.sin(0.37 * c))), [width], 'f32');
  const keys = GpuKeys.fromDevice(ctx, raw, scale, G, D);
  raw.dispose();
  scale.dispose();
  return keys;
}

/** Wraps a backend to time its calls (init synchronised; an iteration = M-step enqueue + the E-step's round trip). */
function timed(be: GpuEmBackend, t: { initMs: number[]; iterMs: number[]; residualMs: number[] }): EmBackend<CudaTensor> {
  let mStart = 0;
  return {
    tokens: be.tokens,
    headDim: be.headDim,
    init: (idx, invTau) => {
      const s = performance.now();
      const out = be.init(idx, invTau);
      ctx.synchronize();
      t.initMs.push(performance.now() - s);
      return out;
    },
    eStep: (theta, invTau) => {
      const s = mStart || performance.now();
      const hard = be.eStep(theta, invTau);
      t.iterMs.push(performance.now() - s);
      mStart = 0;
      return hard;
    },
    mStep: () => {
      mStart = performance.now();
      return be.mStep();
    },
    keep: (theta) => be.keep(theta),
    residual: (theta) => {
      const s = performance.now();
      const e = be.residual(theta);
      t.residualMs.push(performance.now() - s);
      return e;
    },
    read: (theta) => be.read(theta),
  };
}

const keys = makeKeys();
ctx.synchronize();
const times = { initMs: [] as number[], iterMs: [] as number[], residualMs: [] as number[] };
const stages: { group: number; stage: number; steps: number; mse: number; error: number }[] = [];
const started = performance.now();
for (let g = 0; g < G; g++) {
  const be = new GpuEmBackend(ctx, keys.group(g), keys.n2, D);
  const result = await trainGroupEm(timed(be, times), R, (r) => new SeededRandom(streamSeed(Number(args.seed), 0, g, r)), cfg);
  be.dispose();
  result.forEach((s, r) => stages.push({ group: g, stage: r, steps: s.steps, mse: s.mse, error: s.error }));
  process.stderr.write(`group ${g}: ${result.map((s) => s.steps).join(',')} iterations, ${((performance.now() - started) / 1000).toFixed(1)} s so far\n`);
}
const totalSeconds = (performance.now() - started) / 1000;
keys.dispose();
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
console.log(JSON.stringify({
  device: ctx.info.name,
  tokens: N, groups: G, headDim: D, residuals: R, maxSteps: cfg.maxSteps,
  totalSeconds,
  iterations: times.iterMs.length,
  initMsMean: mean(times.initMs),
  iterMsMean: mean(times.iterMs),
  residualMsMean: mean(times.residualMs),
  stages,
}, null, 1));
backend.dispose();
