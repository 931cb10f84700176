/**
 * Our side of the CommVQ decode-attention benchmark (issue 7; scripts/bench/torch_sdpa_decode.py times PyTorch SDPA
 * over a bf16 cache beside it, in the same run): one decode step of one layer at Llama-3.1-8B attention dimensions
 * (B 1, H_q 32, H_kv 8, D_h 128), keys as R = 11 stages of 12-bit codes with random θ, values as N_c = 1024 bits
 * (1-bit CommVQ), at 32K and 128K tokens of context: context − 128 compressed tokens and an exact window of 128.
 * For reference it also times our dense bf16 decode kernel (kernels/attention_decode.cu) over the same context.
 *
 * Timing: CUDA events around a captured CUDA graph of 20 back-to-back steps (as a graph-captured decode loop runs
 * them), after warm-up; the median of the timed replays divided by 20. `commvqMs` is the step as a cache runs it, with
 * the rotation table (positions only) filled once for the cache and passed in; `commvqOwnRotationMs` lets every call
 * fill it (the standalone default). Each step's kernels are also timed alone the
 * same way (`breakdownUs`: a graph of 20 launches of one launcher on the same workspace), which sums to slightly more
 * than the whole step (each kernel's tail is not overlapped by the next one's start). Prints one JSON object.
 *
 *   npm run build && node dist/bench/commvq-attention-bench.js --contexts 32768,131072 > ours.json
 */
import { randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CudaContext } from '../core/backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../core/backend/cuda/cuda-tensor.js';
import { decodeAttention } from '../core/backend/cuda/ops/attention.js';
import {
  codeAttentionStep,
  CodeAttentionWorkspace,
  launchExactLogits,
  launchKeyLogits,
  launchRotationTable,
  launchSoftmaxStats,
  launchValueBits,
  launchValueOut,
  planCodeAttention,
  type CodeAttentionShape,
} from '../core/backend/cuda/ops/code-attention.js';
import { attentionStages } from '../core/commvq/attention-theta.js';
import { uploadTo } from '../core/backend/cuda/ops/copies.js';
import { packedCodeBytes } from '../core/tensor/code-packing.js';
import type { DType } from '../core/tensor/dtype.js';
import { ropeTable } from '../core/model/rope.js';
import { f32ToBf16, f32ToF16 } from '../core/tensor/dtype.js';
import { medianStepMs } from './graph-timing.js';

const { values: args } = parseArgs({
  options: {
    contexts: { type: 'string', default: '32768,131072' },
    window: { type: 'string', default: '128' },
    reps: { type: 'string', default: '20' },
    residuals: { type: 'string', default: '11' },
    'code-bits': { type: 'string', default: '1024' },
  },
});
const contexts = args.contexts.split(',').map(Number);
const W = Number(args.window);
const reps = Number(args.reps);
const R = Number(args.residuals);
const Nc = Number(args['code-bits']);
const Hq = 32;
const Hkv = 8;
const D = 128;
const F = Hkv * D;
const BATCH = 20; // steps per captured graph

const ctx = new CudaContext(0);
const tensors: CudaTensor[] = [];

/** A device tensor of `shape` holding `bytes` (raw `dtype` elements). */
function upload(bytes: Uint8Array, shape: number[], dtype: DType): CudaTensor {
  const t = emptyTensor(ctx, shape, dtype);
  tensors.push(t);
  uploadTo(ctx, t, bytes);
  return t;
}
const randomBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) randomFillSync(out.subarray(at, Math.min(n, at + 65536)));
  return out;
};
/** n bf16 values uniform in [lo, hi). */
const bf16 = (n: number, lo: number, hi: number): Uint8Array =>
  new Uint8Array(Uint16Array.from({ length: n }, () => f32ToBf16(lo + (hi - lo) * Math.random())).buffer);
const f32s = (n: number, f: () => number): Uint8Array => new Uint8Array(Float32Array.from({ length: n }, f).buffer);
const TILE = 1 << 22;
const tile = bf16(TILE, -1, 1);
/** bf16 [n] in [−1, 1): a random block of 4M values repeated (a dense cache of 128K tokens). */
function tiledBf16(n: number): CudaTensor {
  const t = emptyTensor(ctx, [n], 'bf16');
  tensors.push(t);
  for (let at = 0; at < n; at += TILE) uploadTo(ctx, t.rows(at, Math.min(TILE, n - at)), tile.subarray(0, Math.min(TILE, n - at) * 2));
  return t;
}

/** Median milliseconds of one step (graph-timing.ts), BATCH steps per graph. */
const timeGraph = (step: () => void): number => medianStepMs(ctx, step, { steps: BATCH, reps });

const rope = ropeTable({ type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }, D);
const results: Record<string, unknown>[] = [];
for (const context of contexts) {
  const N = context - W;
  const capacity = Math.ceil(N / 64) * 64;
  const shape: CodeAttentionShape = {
    batch: 1, queryHeads: Hq, kvHeads: Hkv, headDim: D, residuals: R, codeBits: Nc, capacity, window: W, firstPosition: 0, maxCompressed: N,
  };
  const codeBytes = packedCodeBytes(R * Hkv);
  const buffers = {
    q: upload(bf16(Hq * D, -2, 2), [1, Hq * D], 'bf16'),
    theta: upload(new Uint8Array(Uint16Array.from({ length: attentionStages(R) * Hkv * 128 * (D / 2) }, () => f32ToF16(0.1 * (Math.random() - 0.5))).buffer), [attentionStages(R) * Hkv * 128 * (D / 2)], 'f16'),
    invFreq: upload(new Uint8Array(rope.invFreq.buffer.slice(0)), [D / 2], 'f32'),
    keyCodes: upload(randomBytes(capacity * codeBytes), [1, capacity, codeBytes], 'u8'),
    keyNorms: upload(bf16(capacity, 1, 4), [1, capacity], 'bf16'),
    valueBits: upload(randomBytes((capacity * Nc) / 8), [1, capacity, Nc / 8], 'u8'),
    valueRho: upload(bf16(capacity, 0.5, 1.5), [1, capacity], 'bf16'),
    codebook: upload(bf16(Nc * F, -0.1, 0.1), [Nc, F], 'bf16'),
    scale: upload(f32s(F, () => 0.5 + Math.random()), [F], 'f32'),
    exactKeys: upload(bf16(W * F, -1, 1), [W, F], 'bf16'),
    exactValues: upload(bf16(W * F, -1, 1), [W, F], 'bf16'),
    compressed: upload(new Uint8Array(Int32Array.of(N).buffer), [1], 'i32'),
    exact: upload(new Uint8Array(Int32Array.of(W).buffer), [1], 'i32'),
    out: upload(new Uint8Array(Hq * D * 2), [1, Hq * D], 'bf16'),
  };
  const rotation = upload(new Uint8Array(capacity * D * 4), [capacity, D / 2, 2], 'f32');
  launchRotationTable(ctx, { invFreq: buffers.invFreq, rotation }, 0, capacity); // once per cache, as a cache does
  const plan = planCodeAttention(ctx.info, shape, { rotationProvided: true });
  const ws = new CodeAttentionWorkspace(ctx, plan);
  const commvqMs = timeGraph(() => codeAttentionStep(ctx, { ...buffers, rotation }, shape, { workspace: ws }));
  const ownPlan = planCodeAttention(ctx.info, shape);
  const ownWs = new CodeAttentionWorkspace(ctx, ownPlan);
  const commvqOwnRotationMs = timeGraph(() => codeAttentionStep(ctx, buffers, shape, { workspace: ownWs }));
  ownWs.dispose();
  const us = (f: () => void): number => Math.round(timeGraph(f) * 1e4) / 10;
  const withRotation = { ...buffers, rotation };
  const breakdownUs = {
    rotationTable: us(() => launchRotationTable(ctx, { invFreq: buffers.invFreq, rotation }, 0, N)),
    keyLogits: us(() => launchKeyLogits(ctx, ws, shape, withRotation)),
    exactLogits: us(() => launchExactLogits(ctx, ws, shape, withRotation)),
    softmaxStats: us(() => launchSoftmaxStats(ctx, ws, shape, withRotation)),
    valueBits: us(() => launchValueBits(ctx, ws, shape, withRotation)),
    valueOut: us(() => launchValueOut(ctx, ws, shape, withRotation)),
  };
  ws.dispose();

  // dense bf16 decode over the same context, for scale
  const k = tiledBf16(context * F);
  const v = tiledBf16(context * F);
  const denseMs = timeGraph(() =>
    decodeAttention(ctx, { q: buffers.q, k, v, out: buffers.out }, { queryRows: 1, queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart: context - 1, kvLength: context }),
  );
  const cacheBytes = N * (packedCodeBytes(R * Hkv) + 2 + Nc / 8 + 2) + 2 * W * F * 2;
  results.push({ context, compressed: N, window: W, commvqMs, commvqOwnRotationMs, breakdownUs, denseOursMs: denseMs, cacheBytes, denseCacheBytes: 2 * context * F * 2 });
  process.stderr.write(`context ${context}: commvq ${(commvqMs * 1e3).toFixed(1)} µs (${(commvqOwnRotationMs * 1e3).toFixed(1)} µs filling the rotation table per call), our dense bf16 decode ${(denseMs * 1e3).toFixed(1)} µs; per kernel ${JSON.stringify(breakdownUs)}\n`);
  while (tensors.length) tensors.pop()!.dispose();
}
console.log(JSON.stringify({ device: ctx.info.name, date: new Date().toISOString().slice(0, 10), queryHeads: Hq, kvHeads: Hkv, headDim: D, residuals: R, codeBits: Nc, batch: 1, stepsPerGraph: BATCH, reps, results }, null, 1));
ctx.dispose();
