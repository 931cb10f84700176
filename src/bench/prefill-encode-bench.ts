/**
 * The two encoders of the CommVQ prefill, each alone (issue 15: encoding must not dominate the prefill).
 *
 * Keys: `encodeKeysOnDevice` at
 * Llama-3.1-8B key shapes (G 8, D_h 128), bf16 keys N(0, 1) and θ N(0, 0.05²) (the search costs the same whatever the
 * data), for prefill row chunks of n tokens and R 11 (1 bit) and 21 (2 bits). The layer's θ tables are built once
 * and timed apart, as the cache builds them once per encode call.
 *
 * Values: what the device store runs per chunk (src/core/commvq/device-store.ts): the layer's bf16 encoder weights
 * cast to f32, then `encodeValues` (LayerNorm, two TF32 GEMMs, GELU, argmax bits) on bf16 values N(0, 1) [n, 1024],
 * for the 1-bit and 2-bit compressor shapes.
 *
 * Timing: CUDA events around `reps` back-to-back calls after a warm-up call, median of 5 such runs. Reports ms per
 * call, and what a 32K and a 128K prompt's 32 layers would take at that chunk size. Prints one JSON object.
 *
 *   npm run build && node dist/bench/prefill-encode-bench.js --tokens 1024,4096,16384 --residuals 11,21
 */
import { parseArgs } from 'node:util';
import { CudaBackend } from '../core/backend/cuda/cuda-backend.js';
import { emptyTensor, type CudaTensor } from '../core/backend/cuda/cuda-tensor.js';
import { uploadTo } from '../core/backend/cuda/ops/copies.js';
import { CudaTimer } from '../core/backend/cuda/timing.js';
import { DeviceKeyTables, encodeKeysOnDevice } from '../core/keys/gpu/gpu-encode.js';
import { SeededRandom } from '../core/model/seeded-random.js';
import { f32ToBf16 } from '../core/tensor/dtype.js';
import { CudaTrainOps } from '../core/values/cuda-train-ops.js';
import { compressorShape, encodeValues, initCompressor } from '../core/values/value-compressor.js';

const { values: args } = parseArgs({
  options: {
    tokens: { type: 'string', default: '1024,4096,16384' },
    residuals: { type: 'string', default: '11,21' },
    reps: { type: 'string', default: '10' },
  },
});
const G = 8;
const D = 128;
const LAYERS = 32;
const reps = Number(args.reps);
const backend = CudaBackend.create(0);
const ctx = backend.ctx;
const timer = new CudaTimer(ctx);
const rng = new SeededRandom(42);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median over 5 runs of the milliseconds per call of `fn`, `reps` calls a run, after one warm-up call. */
function time(fn: () => void): number {
  fn();
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    timer.start();
    for (let k = 0; k < reps; k++) fn();
    runs.push(timer.stop() / reps);
  }
  return median(runs);
}

const tokenCounts = args.tokens.split(',').map(Number);
const keyResults = [];
for (const R of args.residuals.split(',').map(Number)) {
  const theta: CudaTensor = emptyTensor(ctx, [R, G, 128 * (D / 2)], 'f32');
  uploadTo(ctx, theta, Float32Array.from({ length: theta.numel }, () => 0.05 * rng.normal()));
  const layer = { theta, residuals: R, groups: G, headDim: D };
  const tablesMs = time(() => DeviceKeyTables.build(ctx, layer).dispose());
  const tables = DeviceKeyTables.build(ctx, layer);
  for (const n of tokenCounts) {
    const keys = emptyTensor(ctx, [n, G * D], 'bf16');
    uploadTo(ctx, keys, Uint16Array.from({ length: n * G * D }, () => f32ToBf16(rng.normal())));
    const codes = emptyTensor(ctx, [R, G, n], 'i32');
    const n2 = emptyTensor(ctx, [n], 'f32');
    const ms = time(() => encodeKeysOnDevice(ctx, { ...layer, tables }, keys, { out: { codes, n2 } }).dispose());
    const perToken = ms / n;
    keyResults.push({
      residuals: R, tokens: n, ms_per_call: ms, tables_ms: tablesMs,
      ns_per_token_stage_group: (perToken * 1e6) / (R * G),
      prompt_32k_ms: LAYERS * (32768 * perToken + (32768 / n) * tablesMs),
      prompt_128k_ms: LAYERS * (131072 * perToken + (131072 / n) * tablesMs),
    });
    [keys, codes, n2].forEach((t) => t.dispose());
  }
  tables.dispose();
  theta.dispose();
}

const ops = new CudaTrainOps(backend, { matmul: 'tf32' }); // as the device store encodes
const valueResults = [];
for (const bits of [1, 2] as const) {
  const shape = compressorShape(bits, G * D);
  const p = initCompressor(backend, shape, 7);
  const encoder = { ...p, w1: backend.cast(p.w1, 'bf16'), w2: backend.cast(p.w2, 'bf16') }; // the store holds bf16
  const scale = backend.fromArray(new Float32Array(G * D).fill(1), [G * D], 'f32');
  for (const n of tokenCounts) {
    const v = emptyTensor(ctx, [n, G * D], 'bf16');
    uploadTo(ctx, v, Uint16Array.from({ length: n * G * D }, () => f32ToBf16(rng.normal())));
    const ms = time(() => {
      const wide = { ...encoder, w1: backend.cast(encoder.w1, 'f32'), w2: backend.cast(encoder.w2, 'f32') };
      const { bits: b, rho } = encodeValues(ops, wide, v, scale);
      [b, rho, wide.w1, wide.w2].forEach((t) => t.dispose());
    });
    valueResults.push({ bits, tokens: n, ms_per_call: ms, prompt_32k_ms: LAYERS * (32768 / n) * ms, prompt_128k_ms: LAYERS * (131072 / n) * ms });
    v.dispose();
  }
  [...Object.values(p), encoder.w1, encoder.w2, scale].forEach((t) => t.dispose());
}
console.log(JSON.stringify({ device: ctx.info.name, date: new Date().toISOString(), G, D, layers: LAYERS, reps, keys: keyResults, values: valueResults }, null, 2));
timer.dispose();
ops.dispose();
backend.dispose();
