/**
 * One value-compressor training step (spec §5.1, §5.5) at a model's dimensions on one window, our engine against
 * PyTorch on the same GPU in the same run (issue 6: target ≤ 1.5× PyTorch's time). Ours: `trainValueStep` (the
 * training loop of `commvq train-value`) over a model with random bf16 weights made on the GPU, CudaTrainOps, one
 * compressor per layer (spec §5.2 sizes) with random parameters. PyTorch: scripts/bench/torch_value_step.py, run after
 * ours has released the GPU. Each side: wall time of one step including its final synchronisation, median of
 * `--steps` after `--warmup`; a plain forward pass (last-row logits) is timed too, for scale.
 * Prints a markdown table and the ratio; `--json FILE` also writes both sides' raw results.
 *
 *   node dist/bench/value-step-bench.js --config scripts/bench/llama-3.1-8b.config.json --bits 2,1 --torch
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CudaBackend } from '../core/backend/cuda/cuda-backend.js';
import { parseModelConfig } from '../core/model/config.js';
import { randomModel } from '../core/model/random-model.js';
import { SeededRandom } from '../core/model/seeded-random.js';
import { CudaTrainOps } from '../core/values/cuda-train-ops.js';
import { compressorShape, disposeParams, initCompressor, trainableCount } from '../core/values/value-compressor.js';
import { DEFAULT_OPTIMIZER, newLayerState, trainValueStep, type LayerState } from '../core/values/value-trainer.js';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    tokens: { type: 'string', default: '8192' },
    bits: { type: 'string', default: '2,1' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    torch: { type: 'boolean', default: false },
    python: { type: 'string', default: 'python3' },
    json: { type: 'string' },
  },
});

interface StepResult {
  median_ms?: number;
  all_ms?: number[];
  trainable_params?: number;
  peak_gib?: number;
  error?: string;
}
interface SideResult {
  gpu: string;
  tokens: number;
  forward_ms: number;
  steps: Record<string, StepResult>;
  [key: string]: unknown;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const T = Number(args.tokens);
const bitList = args.bits!.split(',').filter(Boolean).map(Number) as (1 | 2)[];

function ours(): SideResult {
  const backend = CudaBackend.create(0);
  try {
    const config = parseModelConfig(JSON.parse(readFileSync(args.config!, 'utf8')), args.config!);
    const model = randomModel(config, backend, { seed: 0 });
    const ops = new CudaTrainOps(backend);
    const rng = new SeededRandom(1);
    const ids = Int32Array.from({ length: T }, () => Math.floor(rng.uniform() * config.vocabSize));
    const wall = (fn: () => void): number => {
      backend.synchronize();
      const t0 = performance.now();
      fn();
      backend.synchronize();
      return performance.now() - t0;
    };
    const forward = (): void => {
      const cache = model.createDenseCache(T);
      model.forward(ids, cache, { logits: 'last' }).dispose();
      cache.dispose();
    };
    wall(forward);
    const result: SideResult = { gpu: backend.ctx.info.name, tokens: T, forward_ms: median([0, 1, 2].map(() => wall(forward))), steps: {} };
    const D = config.numKvHeads * config.headDim;
    for (const bits of bitList) {
      const shape = compressorShape(bits, D);
      const layers = new Map<number, LayerState>();
      for (let l = 0; l < config.numLayers; l++) {
        const scale = backend.randomTensor([D], 'f32', { seed: 1000 + l, distribution: 'uniform', low: 0.5, high: 1.5 });
        layers.set(l, newLayerState(ops, shape, initCompressor(backend, shape, l + 1), scale));
      }
      const settings = { ...DEFAULT_OPTIMIZER, schedule: 'constant' as const, warmup: 0, steps: 1000, seed: 7 };
      backend.resetPeak();
      let step = 0;
      const run = (): void => void trainValueStep(model, ops, layers, ids, step++, settings);
      for (let i = 0; i < Number(args.warmup); i++) wall(run);
      const times = Array.from({ length: Number(args.steps) }, () => wall(run));
      result.steps[bits] = {
        median_ms: median(times),
        all_ms: times,
        trainable_params: config.numLayers * trainableCount(shape),
        peak_gib: backend.memory().peakBytes / 2 ** 30,
      };
      for (const s of layers.values()) {
        disposeParams(s.params);
        [s.grads, s.m, s.v].forEach((g) => disposeParams(g));
        s.scale.dispose();
      }
    }
    ops.dispose();
    return result;
  } finally {
    backend.dispose();
  }
}

function pytorch(): SideResult {
  const script = new URL('../../scripts/bench/torch_value_step.py', import.meta.url).pathname;
  const py = spawnSync(args.python!, [script, args.config!, '--tokens', String(T), '--bits', args.bits!, '--steps', args.steps!, '--warmup', args.warmup!], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  if (py.status !== 0) throw new Error(`torch_value_step.py exited with ${py.status}`);
  return JSON.parse(py.stdout.trim().split('\n').pop()!) as SideResult;
}

function report(a: SideResult, b?: SideResult): string {
  const ms = (x?: number): string => (x === undefined ? '—' : x.toFixed(0));
  const lines = [
    `GPU: ${a.gpu}; ${a.tokens} tokens; PyTorch ${b ? `${String(b['torch'])}, transformers ${String(b['transformers'])}` : 'not run'}`,
    '',
    '| | ours ms | PyTorch ms | time ratio (target ≤ 1.5) | ours peak GiB | PyTorch peak GiB |',
    '|---|---|---|---|---|---|',
    `| forward only (no compressors) | ${ms(a.forward_ms)} | ${ms(b?.forward_ms)} | ${b ? (a.forward_ms / b.forward_ms).toFixed(2) : '—'} | | |`,
  ];
  for (const bits of bitList) {
    const o = a.steps[bits]!;
    const t = b?.steps[bits];
    const ratio = o.median_ms !== undefined && t?.median_ms !== undefined ? (o.median_ms / t.median_ms).toFixed(2) : (t?.error ?? '—');
    lines.push(
      `| training step, ${bits}-bit (${((o.trainable_params ?? 0) / 1e6).toFixed(1)} M trainable) | ${ms(o.median_ms)} | ${ms(t?.median_ms)} | ${ratio} | ${o.peak_gib?.toFixed(1) ?? '—'} | ${t?.peak_gib?.toFixed(1) ?? '—'} |`,
    );
  }
  return lines.join('\n');
}

const a = ours();
const b = args.torch ? pytorch() : undefined;
if (args.json) writeFileSync(args.json, JSON.stringify({ ours: a, torch: b }, null, 2));
console.log(report(a, b));
