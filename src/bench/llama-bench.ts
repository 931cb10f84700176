/**
 * Our side of the Llama benchmark (scripts/bench/llama.sh runs it beside PyTorch): a model of the given config with
 * random bf16 weights made on the GPU; prefill tokens/s at each length (median of 3 after a warm-up) and decode
 * ms/token at each context (median over `steps` graph-replayed steps, each timed from the upload of its token to
 * its argmax on the host, as a generation loop sees it). Prints one JSON object (see llama-report.ts).
 *
 *   node dist/bench/llama-bench.js --config scripts/bench/llama-3.1-8b.config.json --decode 1024,8192 --prefill 8192
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CudaBackend } from '../core/backend/cuda/cuda-backend.js';
import { parseModelConfig } from '../core/model/config.js';
import { GraphDecoder } from '../core/model/graph-decoder.js';
import type { LlamaModel } from '../core/model/llama.js';
import { randomModel } from '../core/model/random-model.js';
import { SeededRandom } from '../core/model/seeded-random.js';
import { bytesPerElement } from '../core/tensor/dtype.js';
import { numel } from '../core/tensor/shape.js';
import type { OurResult } from './llama-report.js';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    decode: { type: 'string', default: '1024,8192,32768' },
    prefill: { type: 'string', default: '8192,32768' },
    steps: { type: 'string', default: '32' },
  },
});
const lengths = (s: string) => s.split(',').filter(Boolean).map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const backend = CudaBackend.create(0);
const config = parseModelConfig(JSON.parse(readFileSync(args.config!, 'utf8')), args.config!);
const model = randomModel(config, backend, { seed: 0 });
const rng = new SeededRandom(1);
const randomIds = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * config.vocabSize));

/** bytes read + written per second by a 1 GiB device-to-device copy, median of 10 */
function copyBandwidth(): number {
  const rows = 1 << 19; // [rows, 1024] bf16 = 1 GiB
  const src = backend.randomTensor([rows, 1024], 'bf16', { seed: 7 });
  const dst = backend.zeros([rows, 1024], 'bf16');
  const times = Array.from({ length: 13 }, () => backend.timeMs(() => backend.writeRows(dst, 0, src))).slice(3);
  src.dispose();
  dst.dispose();
  return (2 * rows * 1024 * 2) / (median(times) / 1e3);
}

function prefillMs(m: LlamaModel, n: number): number {
  const cache = m.createDenseCache(n);
  const ids = randomIds(n);
  const ms = backend.timeMs(() => m.forward(ids, cache, { logits: 'last' }).dispose());
  cache.dispose();
  return ms;
}

/** weights one decode step reads (all but the embedding table, of which it reads one row) plus the KV cache */
function decodeBytes(context: number): number {
  const w = model.weights;
  const all = new Set([w.norm, w.lmHead, ...w.layers.flatMap((l) => Object.values(l).filter((t) => t !== undefined))]);
  let bytes = config.hiddenSize * 2;
  for (const t of all) bytes += numel(t.shape) * bytesPerElement(t.dtype);
  return bytes + 2 * config.numLayers * context * config.numKvHeads * config.headDim * 2;
}

function decodeMsPerToken(context: number, steps: number): number {
  const cache = model.createDenseCache(context + steps + 8);
  const logits = model.forward(randomIds(context), cache, { logits: 'last' });
  let id = backend.argmaxRows(logits)[0]!;
  logits.dispose();
  const decoder = GraphDecoder.create(model, cache)!;
  const times: number[] = [];
  for (let i = 0; i < steps + 4; i++) {
    const t0 = performance.now();
    id = backend.argmaxRows(decoder.next(id))[0]!;
    if (i >= 4) times.push(performance.now() - t0);
  }
  decoder.dispose();
  cache.dispose();
  return median(times);
}

const result: OurResult = {
  gpu: backend.ctx.info.name,
  copy_bytes_per_s: copyBandwidth(),
  decode_ms_per_token: {},
  prefill_tokens_per_s: {},
  decode_bytes_per_token: {},
};
prefillMs(model, 512); // warm-up: kernels loaded, GEMM plans made
for (const n of lengths(args.prefill!)) {
  result.prefill_tokens_per_s[n] = n / (median([0, 1, 2].map(() => prefillMs(model, n))) / 1e3);
}
for (const n of lengths(args.decode!)) {
  result.decode_ms_per_token[n] = decodeMsPerToken(n, Number(args.steps));
  result.decode_bytes_per_token[n] = decodeBytes(n);
}
console.log(JSON.stringify(result));
backend.dispose();
