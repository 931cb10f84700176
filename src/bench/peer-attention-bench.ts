/**
 * Our side of the peer caches' decode-attention benchmark (issue 18; scripts/bench/torch_sdpa_decode.py --peers times
 * PyTorch SDPA over a bf16 cache beside it, on the same card, and prints the ratios): one decode step of one layer at
 * Llama-3.1-8B attention dimensions (B 1, H_q 32, H_kv 8, D_h 128) at 32K and 128K tokens of context, for every peer
 * cache as it stands mid-decode with the most exact tokens its rule allows:
 *   int4-g64, int2-g32 (HF's R = 128: 127 exact), fp8 (none exact),
 *   kivi-2bit-g32-r128, kivi-1bit-g32-r128 (keys: the last T mod 128 exact; values: the last 128),
 * each through peerDecodeAttention (kernels/peer_attention_decode.cu, dequantization fused, then
 * attention_decode.cu's combine), and our dense bf16 decode kernel over the same context for scale. Codes and
 * scales are random (timing does not depend on them; e4m3's NaN codes are avoided).
 *
 * Timing: CUDA events around a captured CUDA graph of 20 back-to-back steps, after warm-up; the median of the timed
 * replays divided by 20 (as src/bench/commvq-attention-bench.ts). Prints one JSON object: per context and cache the
 * milliseconds, the bytes the cache holds for that layer (what a step reads), and the rate that makes.
 *
 *   npm run build && node dist/bench/peer-attention-bench.js > peers.json
 *   python3 scripts/bench/torch_sdpa_decode.py --peers peers.json > peers-vs-sdpa.json
 */
import { randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CudaContext } from '../core/backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../core/backend/cuda/cuda-tensor.js';
import { decodeAttention } from '../core/backend/cuda/ops/attention.js';
import { uploadTo } from '../core/backend/cuda/ops/copies.js';
import { peerDecodeAttention, type PeerAttendPart, type PeerFormat, type PeerKernelKind, type PeerPart } from '../core/backend/cuda/ops/peer-cache.js';
import { f32ToBf16, f32ToF16, type DType } from '../core/tensor/dtype.js';
import { medianStepMs } from './graph-timing.js';

const { values: args } = parseArgs({
  options: {
    contexts: { type: 'string', default: '32768,131072' },
    reps: { type: 'string', default: '20' },
  },
});
const contexts = args.contexts.split(',').map(Number);
const reps = Number(args.reps);
const Hq = 32;
const Hkv = 8;
const D = 128;
const W = Hkv * D;
const BATCH = 20; // steps per captured graph
const heads = { kvHeads: Hkv, headDim: D };

/** A cache as the benchmark builds it: its kernel, key and value formats, and its split at n tokens. */
interface BenchCache {
  label: string;
  kind: PeerKernelKind;
  keys: PeerFormat;
  values: PeerFormat;
  /** quantized keys and values at n tokens, and the exact rows' ring size for values (0: linear) */
  split(n: number): { keys: number; values: number; valueRing: number };
}
const int = (bits: 4 | 2, group: number): BenchCache => ({
  label: `int${bits}-g${group}`, kind: bits === 4 ? 'int4' : 'int2',
  keys: { layout: 'token', bits, group }, values: { layout: 'token', bits, group },
  split: (n) => ({ keys: n - 127, values: n - 127, valueRing: 0 }),
});
const kivi = (bits: 2 | 1): BenchCache => ({
  label: `kivi-${bits}bit-g32-r128`, kind: bits === 2 ? 'kivi2' : 'kivi1',
  keys: { layout: 'channel', bits, group: 32 }, values: { layout: 'token', bits, group: 32 },
  split: (n) => ({ keys: n - (n % 128), values: n - 128, valueRing: 129 }),
});
const CACHES: BenchCache[] = [
  int(4, 64), int(2, 32),
  { label: 'fp8', kind: 'fp8', keys: { layout: 'fp8', bits: 8, group: D }, values: { layout: 'fp8', bits: 8, group: D }, split: (n) => ({ keys: n - 1, values: n - 1, valueRing: 0 }) },
  kivi(2), kivi(1),
];

const ctx = new CudaContext(0);
const tensors: CudaTensor[] = [];

function upload(bytes: Uint8Array, shape: number[], dtype: DType): CudaTensor {
  const t = emptyTensor(ctx, shape, dtype);
  tensors.push(t);
  for (let at = 0; at < bytes.length; at += 1 << 26) {
    const end = Math.min(bytes.length, at + (1 << 26));
    const view = t.view(at, [end - at], 'u8');
    uploadTo(ctx, view, bytes.subarray(at, end));
  }
  return t;
}
const randomBytes = (n: number, fix: (b: number) => number = (b) => b): Uint8Array => {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) randomFillSync(out.subarray(at, Math.min(n, at + 65536)));
  for (let i = 0; i < n; i++) out[i] = fix(out[i]!);
  return out;
};
const bf16 = (n: number, lo: number, hi: number): Uint8Array => new Uint8Array(Uint16Array.from({ length: n }, () => f32ToBf16(lo + (hi - lo) * Math.random())).buffer);
const f16 = (n: number, lo: number, hi: number): Uint8Array => new Uint8Array(Uint16Array.from({ length: n }, () => f32ToF16(lo + (hi - lo) * Math.random())).buffer);
const f32 = (n: number, lo: number, hi: number): Uint8Array => new Uint8Array(Float32Array.from({ length: n }, () => lo + (hi - lo) * Math.random()).buffer);
const noNaN = (b: number) => ((b & 0x7f) === 0x7f ? b - 1 : b); // e4m3's NaN codes 0x7f, 0xff

/** A part of `rows` tokens in `f`, random codes and scales; its bytes. */
function part(f: PeerFormat, rows: number): { part: PeerPart; bytes: number } {
  const codes = upload(randomBytes((rows * W * f.bits) / 8, f.layout === 'fp8' ? noNaN : undefined), [rows, (W * f.bits) / 8], 'u8');
  if (f.layout === 'fp8') {
    const scales = upload(f32(rows * Hkv, 0.001, 0.01), [rows, Hkv], 'f32');
    return { part: { format: f, codes, scales }, bytes: codes.byteLength + scales.byteLength };
  }
  const groups = f.layout === 'token' ? (rows * W) / f.group : Math.ceil(rows / f.group) * W;
  const scales = upload(f16(groups, 0.01, 0.05), [groups], 'f16');
  const zeros = upload(f16(groups, -1, 0), [groups], 'f16');
  return { part: { format: f, codes, scales, zeros }, bytes: codes.byteLength + scales.byteLength + zeros.byteLength };
}

/** Median milliseconds of one step (graph-timing.ts), BATCH steps per graph. */
const timeGraph = (step: () => void): number => medianStepMs(ctx, step, { steps: BATCH, reps });

const results: Record<string, unknown>[] = [];
for (const n of contexts) {
  const q = upload(bf16(Hq * D, -1, 1), [1, Hq * D], 'bf16');
  const out = upload(new Uint8Array(Hq * D * 2), [1, Hq * D], 'bf16');
  const caches: Record<string, { ms: number; cacheBytes: number; gbPerS: number }> = {};
  for (const c of CACHES) {
    const split = c.split(n);
    const k = part(c.keys, split.keys);
    const v = part(c.values, split.values);
    const exactRows = { keys: n - split.keys, values: split.valueRing || n - split.values };
    const kx = upload(bf16(Math.max(exactRows.keys, 1) * W, -1, 1), [Math.max(exactRows.keys, 1), W], 'bf16');
    const vx = upload(bf16(Math.max(exactRows.values, 1) * W, -1, 1), [Math.max(exactRows.values, 1), W], 'bf16');
    const keys: PeerAttendPart = { part: k.part, quantized: split.keys, exact: kx, exactBase: split.keys, exactMod: 0 };
    const values: PeerAttendPart = { part: v.part, quantized: split.values, exact: vx, exactBase: split.valueRing ? 0 : split.values, exactMod: split.valueRing };
    const ms = timeGraph(() => peerDecodeAttention(ctx, c.kind, q, out, keys, values, { queryHeads: Hq, kvHeads: Hkv, headDim: D, n }));
    const cacheBytes = k.bytes + v.bytes + ((n - split.keys) + (n - split.values)) * W * 2;
    caches[c.label] = { ms, cacheBytes, gbPerS: cacheBytes / (ms * 1e6) };
    process.stderr.write(`context ${n}: ${c.label} ${(ms * 1e3).toFixed(1)} µs (${(cacheBytes / 2 ** 20).toFixed(1)} MiB, ${(cacheBytes / (ms * 1e6)).toFixed(0)} GB/s)\n`);
    [k.part.codes, k.part.scales, k.part.zeros, v.part.codes, v.part.scales, v.part.zeros, kx, vx].forEach((t) => t?.dispose());
  }
  const kd = upload(bf16(Math.min(n * W, 1 << 22), -1, 1), [Math.min(n * W, 1 << 22)], 'bf16'); // a tile, repeated below
  const k = emptyTensor(ctx, [n, W], 'bf16');
  const v = emptyTensor(ctx, [n, W], 'bf16');
  tensors.push(k, v);
  for (let at = 0; at < n * W; at += kd.numel) {
    const len = Math.min(kd.numel, n * W - at);
    ctx.copy(k.ptr + BigInt(2 * at), kd.ptr, 2 * len);
    ctx.copy(v.ptr + BigInt(2 * at), kd.ptr, 2 * len);
  }
  const denseMs = timeGraph(() => decodeAttention(ctx, { q, k, v, out }, { queryRows: 1, queryHeads: Hq, kvHeads: Hkv, headDim: D, qStart: n - 1, kvLength: n }));
  process.stderr.write(`context ${n}: our dense bf16 decode ${(denseMs * 1e3).toFixed(1)} µs\n`);
  results.push({ context: n, caches, denseOursMs: denseMs, denseCacheBytes: 2 * n * W * 2 });
  while (tensors.length) tensors.pop()!.dispose();
}
console.log(JSON.stringify({ device: ctx.info.name, date: new Date().toISOString().slice(0, 10), queryHeads: Hq, kvHeads: Hkv, headDim: D, batch: 1, stepsPerGraph: BATCH, reps, results }, null, 1));
ctx.dispose();
