/**
 * Data-parallel train-value step time, for the scaling table of issue 21 (target: ≥ 0.85 of linear from 1 to N
 * GPUs). Run under `commvq launch`, one rank per GPU: every rank builds the same model with random weights and one
 * compressor per layer, then times `parallelStep` (the step of `commvq train-value` under launch) on a global batch
 * of one window per rank: forward and backward of its window, the bucketed all-reduce, AdamW. Wall time per step
 * including its final synchronisation, median of `--steps` after `--warmup`; the all-reduce of the bucket alone is
 * timed too. Rank 0 prints one JSON line; scaling at W ranks = (step ms at 1) / (step ms at W), since each rank
 * handles one window either way.
 *
 *   for n in 1 2 4 8; do node bin/run.js launch --gpus 0-$((n-1)) -- node dist/bench/dp-step-bench.js \
 *     --config scripts/bench/llama-3.1-8b.config.json --bits 1; done
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createBackend } from '../core/backend/create-backend.js';
import { parseModelConfig } from '../core/model/config.js';
import { randomModel } from '../core/model/random-model.js';
import { SeededRandom } from '../core/model/seeded-random.js';
import { distEnv } from '../core/parallel/dist-env.js';
import { openCollective } from '../core/parallel/open-collective.js';
import { GradientBucket } from '../core/values/gradient-bucket.js';
import { parallelStep } from '../core/values/parallel-step.js';
import { createTrainOps } from '../core/values/train-ops-factory.js';
import { compressorShape, initCompressor, trainableCount } from '../core/values/value-compressor.js';
import { DEFAULT_OPTIMIZER, newLayerState, type LayerState } from '../core/values/value-trainer.js';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    tokens: { type: 'string', default: '8192' },
    bits: { type: 'string', default: '1' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    device: { type: 'string', default: 'cuda' },
  },
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const env = distEnv();
const backend = await createBackend(args.device!);
const collective = await openCollective(env, backend);
const config = parseModelConfig(JSON.parse(readFileSync(args.config!, 'utf8')), args.config!);
const T = Number(args.tokens);
const model = randomModel(config, backend, { seed: 0 });
const ops = await createTrainOps(backend);
const D = config.numKvHeads * config.headDim;
const shape = compressorShape(Number(args.bits) as 1 | 2, D);
const layers = new Map<number, LayerState>();
for (let l = 0; l < config.numLayers; l++) {
  const scale = backend.randomTensor([D], 'f32', { seed: 1000 + l, distribution: 'uniform', low: 0.5, high: 1.5 });
  layers.set(l, newLayerState(ops, shape, initCompressor(backend, shape, l + 1), scale));
}
const rng = new SeededRandom(1);
const batch = Array.from({ length: env.worldSize }, () => Int32Array.from({ length: T }, () => Math.floor(rng.uniform() * config.vocabSize)));
const bucket = new GradientBucket(ops, layers);
const settings = { ...DEFAULT_OPTIMIZER, schedule: 'constant' as const, warmup: 0, steps: 1000, seed: 7 };
const wall = async (fn: () => Promise<unknown>): Promise<number> => {
  backend.synchronize();
  await collective.barrier('a timed step');
  const t0 = performance.now();
  await fn();
  backend.synchronize();
  return performance.now() - t0;
};
let step = 0;
const run = () => parallelStep(model, ops, layers, batch, step++, settings, { collective, bucket, stop: false });
for (let i = 0; i < Number(args.warmup); i++) await wall(run);
const steps: number[] = [];
for (let i = 0; i < Number(args.steps); i++) steps.push(await wall(run));
const reduces: number[] = [];
for (let i = 0; i < Number(args.steps); i++) reduces.push(await wall(() => bucket.finishMean(collective, env.worldSize)));
if (env.rank === 0) {
  console.log(JSON.stringify({
    world: env.worldSize, device: backend.device, tokens_per_rank: T, bits: Number(args.bits), trainable_params: config.numLayers * trainableCount(shape),
    step_ms: median(steps), all_step_ms: steps, reduce_ms: median(reduces), tokens_per_s: (env.worldSize * T) / (median(steps) / 1000),
  }));
}
bucket.dispose();
collective.dispose();
