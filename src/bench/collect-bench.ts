/**
 * collect-kv's cost over a plain forward pass, at Llama-3.1-8B size on one GPU (issue target: ≤ 1.25×). A model
 * folder with the 8B config, the demo byte-level tokenizer and random weights; a generated corpus. Measures the
 * median time of a forward over one 8192-token window (last-row logits), then collect-kv over `windows` windows
 * of all 32 layers (steady-state time between window commits: forward, f16 casts, download, and the previous
 * window's writes overlapped). Prints one JSON object.
 *
 *   node dist/bench/collect-bench.js --config scripts/bench/llama-3.1-8b.config.json --out /tmp/collect --windows 6
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CudaBackend } from '../core/backend/cuda/cuda-backend.js';
import { collectKv } from '../core/kv/collect-kv.js';
import { writeDemoModel } from '../core/model/demo-model.js';
import { loadModel } from '../core/model/load-model.js';
import type { Tensor } from '../core/tensor/tensor.js';

const { values: args } = parseArgs({
  options: { config: { type: 'string' }, out: { type: 'string' }, windows: { type: 'string', default: '6' }, 'seq-len': { type: 'string', default: '8192' } },
});
const seqLen = Number(args['seq-len']);
const windows = Number(args.windows);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const modelDir = mkdtempSync(join(tmpdir(), 'commvq-8b-'));
writeDemoModel(modelDir);
rmSync(join(modelDir, 'model.safetensors'));
copyFileSync(args.config!, join(modelDir, 'config.json'));
const corpus = join(modelDir, 'corpus.jsonl');
const words = ['memory', 'codebook', 'attention', 'rotary', 'value', 'key', 'cache', 'token', 'layer', 'quantize'];
writeFileSync(corpus, Array.from({ length: 400 }, (_, i) => JSON.stringify({ text: Array.from({ length: 200 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ') })).join('\n'));

// 1. a plain forward per window
let backend = CudaBackend.create(0);
const { model } = loadModel(modelDir, { backend, randomWeights: true });
const ids = Int32Array.from({ length: seqLen }, (_, i) => 32 + (i % 90));
const forwardMs: number[] = [];
for (let i = 0; i < 4; i++) {
  const cache = model.createDenseCache(seqLen);
  forwardMs.push(backend.timeMs(() => model.forward(ids, cache, { logits: 'last' }).dispose()));
  cache.dispose();
}
// the same forward with what collect adds before the disk: f16 copies of every layer's k and v, downloaded into
// pinned staging memory
const captureMs: number[] = [];
const fileBytes = seqLen * 1024 * 2;
const staging = backend.allocStaging(fileBytes * 64);
for (let i = 0; i < 3; i++) {
  const cache = model.createDenseCache(seqLen);
  const t0 = performance.now();
  const kept: Tensor[] = [];
  model.forward(ids, cache, { logits: 'last', observe: (_l, kv) => kept.push(backend.cast(kv.kPre, 'f16'), backend.cast(kv.v, 'f16')) }).dispose();
  kept.forEach((t, j) => backend.downloadAsync(t, staging.bytes.subarray(j * fileBytes, (j + 1) * fileBytes)));
  backend.synchronize();
  captureMs.push(performance.now() - t0);
  kept.forEach((t) => t.dispose());
  cache.dispose();
}
staging.dispose();
backend.dispose();

// 2. collect-kv over the same window size, every layer
backend = CudaBackend.create(0);
const commits: number[] = [];
const started = performance.now();
const summary = await collectKv({
  modelDir, corpus, runDir: args.out!, backend, randomWeights: true, tokens: windows * seqLen, seqLen,
  onProgress: () => commits.push(performance.now()),
});
const totalMs = performance.now() - started;
const intervals = commits.slice(1).map((t, i) => t - commits[i]!);
const bytesPerWindow = 2 * summary.layers.length * seqLen * 1024 * 2;
const forward = median(forwardMs.slice(1));
const collect = median(intervals);
console.log(JSON.stringify({
  gpu: backend.ctx.info.name, seq_len: seqLen, windows: summary.windowsDone, layers: summary.layers.length,
  forward_ms: forward, collect_ms_per_window: collect, ratio: collect / forward, total_ms: totalMs,
  forward_with_capture_ms: median(captureMs),
  written_bytes_per_window: bytesPerWindow, write_gb_per_s: bytesPerWindow / (collect / 1e3) / 1e9,
}));
backend.dispose();
rmSync(modelDir, { recursive: true, force: true });
