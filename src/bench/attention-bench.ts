/**
 * Times the CUDA attention kernels at Llama-3.1-8B shapes (H_q 32, H_kv 8, D_h 128) with CUDA events: causal
 * prefill at T 8K and 32K, a chunked prefill, and one decode step at 32K and 128K of context. Prints one line per
 * case (median of the timed runs) with TFLOP/s (causal: 2·2·D_h·H_q·Σ visible keys) or GB/s (K and V bytes read).
 * Inputs are random bf16 (a 4M-element random block tiled over each tensor), never zeros.
 *
 *   npm run build && node dist/bench/attention-bench.js
 */
import { CudaContext } from '../core/backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../core/backend/cuda/cuda-tensor.js';
import { checkCu, CU_EVENT_DEFAULT } from '../core/backend/cuda/driver.js';
import { asBigInt } from '../core/backend/cuda/native.js';
import { decodeAttention, prefillAttention, type AttentionLaunchShape, type DecodeOptions } from '../core/backend/cuda/ops/attention.js';
import { uploadTo } from '../core/backend/cuda/ops/copies.js';
import { f32ToBf16 } from '../core/tensor/dtype.js';

const ctx = new CudaContext(0);
const cu = ctx.cu;

const RANDOM_ELEMS = 1 << 22;
const random = new Uint16Array(RANDOM_ELEMS);
for (let i = 0; i < RANDOM_ELEMS; i++) random[i] = f32ToBf16((Math.random() * 2 - 1) * 2);
const randomBytes = new Uint8Array(random.buffer);

/** bf16 [elems] of random values. */
function randomTensor(elems: number): CudaTensor {
  const t = emptyTensor(ctx, [elems], 'bf16');
  for (let at = 0; at < elems; at += RANDOM_ELEMS) {
    const n = Math.min(RANDOM_ELEMS, elems - at);
    uploadTo(ctx, t.rows(at, n), randomBytes.subarray(0, n * 2));
  }
  return t;
}

function event(): bigint {
  const e: [unknown] = [null];
  checkCu(cu.cuEventCreate(e, CU_EVENT_DEFAULT), 'cuEventCreate');
  return asBigInt(e[0]);
}

/** Median milliseconds of `reps` runs of `fn` after `warmup` runs. */
function time(fn: () => void, reps: number, warmup = 2): number {
  for (let i = 0; i < warmup; i++) fn();
  const start = event();
  const stop = event();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    checkCu(cu.cuEventRecord(start, ctx.stream), 'cuEventRecord');
    fn();
    checkCu(cu.cuEventRecord(stop, ctx.stream), 'cuEventRecord');
    checkCu(cu.cuEventSynchronize(stop), 'cuEventSynchronize');
    const out = [0];
    checkCu(cu.cuEventElapsedTime(out, start, stop), 'cuEventElapsedTime');
    ms.push(out[0]!);
  }
  cu.cuEventDestroy(start);
  cu.cuEventDestroy(stop);
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1]!;
}

/** Times one case; `decode` options may name unitKeys, or `graph: maxKvLength` to time a captured graph's replays. */
function bench(kind: 'prefill' | 'decode', shape: AttentionLaunchShape, reps: number, opts: DecodeOptions & { graph?: number } = {}): void {
  const { queryRows: Tq, queryHeads: Hq, kvHeads: Hkv, headDim: D, kvLength } = shape;
  const q = randomTensor(Tq * Hq * D);
  const k = randomTensor(Math.max(kvLength, opts.graph ?? 0) * Hkv * D);
  const v = randomTensor(Math.max(kvLength, opts.graph ?? 0) * Hkv * D);
  const out = emptyTensor(ctx, [Tq, Hq * D], 'bf16');
  const lengths = emptyTensor(ctx, [2], 'i32');
  uploadTo(ctx, lengths, new Int32Array([shape.qStart, kvLength]));
  const p = { q, k, v, out };
  const options: DecodeOptions =
    opts.graph !== undefined ? { lengths, maxKvLength: opts.graph } : { unitKeys: opts.unitKeys };
  const label = opts.graph !== undefined ? ` device lengths, grid for ${opts.graph}` : opts.unitKeys ? ` unitKeys ${opts.unitKeys}` : '';
  const step = kind === 'prefill' ? () => prefillAttention(ctx, p, shape) : () => decodeAttention(ctx, p, shape, options);
  // Decode steps last tens of microseconds, about what the host needs to enqueue one: time a captured graph of 20
  // back-to-back steps instead, as a graph-captured decode loop runs them.
  const batch = kind === 'decode' ? 20 : 1;
  step();
  const graph = batch > 1 ? ctx.capture(() => { for (let i = 0; i < batch; i++) step(); }).graph : undefined;
  const ms = time(graph ? () => graph.replay() : step, reps) / batch;
  graph?.dispose();
  let visible = 0;
  for (let i = 0; i < Tq; i++) visible += Math.min(shape.qStart + i + 1, kvLength);
  const tflops = (4 * D * Hq * visible) / (ms * 1e-3) / 1e12;
  const gbs = (2 * Math.min(kvLength, shape.qStart + Tq) * Hkv * D * 2) / (ms * 1e-3) / 1e9;
  const rate = kind === 'prefill' ? `${tflops.toFixed(1)} TFLOP/s` : `${gbs.toFixed(0)} GB/s (K+V read)`;
  const dims = `D ${D} Tq ${String(Tq).padStart(5)} qStart ${String(shape.qStart).padStart(6)} kv ${String(kvLength).padStart(6)}`;
  console.log(`${kind.padEnd(7)} ${dims}: ${ms.toFixed(3)} ms  ${rate}${label}`);
  for (const t of [q, k, v, out, lengths]) t.dispose();
}

const llama = { queryHeads: 32, kvHeads: 8, headDim: 128 };
console.log(`device: ${ctx.info.name}, ${ctx.info.smCount} SMs`);
bench('prefill', { ...llama, queryRows: 8192, qStart: 0, kvLength: 8192 }, 20);
bench('prefill', { ...llama, queryRows: 32768, qStart: 0, kvLength: 32768 }, 5);
bench('prefill', { ...llama, queryRows: 2048, qStart: 30720, kvLength: 32768 }, 10);
bench('prefill', { ...llama, headDim: 64, queryRows: 8192, qStart: 0, kvLength: 8192 }, 10);
const decode32k = { ...llama, queryRows: 1, qStart: 32767, kvLength: 32768 };
const decode128k = { ...llama, queryRows: 1, qStart: 131071, kvLength: 131072 };
for (const unitKeys of [undefined, 128, 256, 512, 1024]) bench('decode', decode32k, 20, { unitKeys });
bench('decode', decode32k, 20, { graph: 131072 });
for (const unitKeys of [undefined, 512, 1024, 2048]) bench('decode', decode128k, 20, { unitKeys });
for (const unitKeys of [undefined, 64, 128, 256]) bench('decode', { ...llama, queryRows: 1, qStart: 4095, kvLength: 4096 }, 20, { unitKeys });
bench('decode', { ...llama, queryRows: 4, qStart: 32764, kvLength: 32768 }, 20);
bench('decode', { ...llama, headDim: 64, queryRows: 1, qStart: 32767, kvLength: 32768 }, 20);
ctx.dispose();
