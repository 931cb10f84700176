import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { readCorpus } from '../data/corpus.js';
import { packWindows } from '../data/packing.js';
import { valueCodebookFileName, type Bits } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { yieldToEvents } from '../stop-point.js';
import { fileHash } from '../io/file-hash.js';
import { readScales } from '../kv/make-scale.js';
import { readManifest } from '../kv/run-manifest.js';
import { parseLayerList } from '../layer-list.js';
import { loadModel } from '../model/load-model.js';
import { DEFAULT_SEED } from '../model/seeded-random.js';
import { lineChartSvg } from '../plot/line-chart.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointInfo } from './checkpoint.js';
import { evaluateValues, type ValueEvaluation } from './evaluate-values.js';
import { createTrainOps } from './train-ops-factory.js';
import { compressorShape, checkScale, initCompressor, PARAM_NAMES } from './value-compressor.js';
import { writeValueCodebook } from './value-codebook-file.js';
import { DEFAULT_OPTIMIZER, newLayerState, trainValueStep, type LayerState, type OptimizerSettings, type StepLosses } from './value-trainer.js';
import { checkNumberOption, type NumberRule } from '../options/number-option.js';
import { OptionError } from '../errors.js';
import type { Collective } from '../parallel/collective.js';
import { SingleProcess } from '../parallel/collective.js';
import { GradientBucket } from './gradient-bucket.js';
import { parallelStep } from './parallel-step.js';

export interface TrainValueOptions {
  runDir: string;
  modelDir: string;
  corpus: string;
  backend: Backend;
  bits: Bits;
  steps: number;
  seqLen?: number;
  lr?: number;
  schedule?: 'cosine' | 'constant';
  warmup?: number;
  seed?: number;
  field?: string;
  layers?: string;
  /** checkpoint every N steps (and at the end) */
  checkpointEvery?: number;
  /** held-out windows (the first ones of the corpus, never trained on) for the final evaluation */
  evalWindows?: number;
  resume?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite); non-finite activations are still refused */
  allowNonFinite?: boolean;
  signal?: AbortSignal;
  /**
   * The ranks of a data-parallel job (parallel-step.ts): each runs its share of every step's windows, gradients are
   * all-reduced, only rank 0 writes files. Without it the run is one process, as before.
   */
  collective?: Collective;
  /** windows per step over all ranks (default: a resumed run's own, else the world size); the world size divides it */
  batch?: number;
  onStep?: (losses: StepLosses & { step: number }, steps: number) => void;
}

export interface TrainValueResult {
  codebook: string;
  checkpoint: string;
  lossPlot: string;
  report: string;
  stepsDone: number;
  complete: boolean;
  history: (StepLosses & { step: number })[];
  evaluation?: ValueEvaluation[];
}

/** The learning rates train-value takes (the --lr flag and library callers alike): AdamW's peak rate, in (0, 1]. */
export const LR_RULE: NumberRule = { above: 0, max: 1 };

/**
 * train-value (spec §5): trains one value compressor per layer with the frozen model in the loop, on packed windows
 * of a corpus (the same packing as collect-kv), from RUN_DIR's make-scale statistics. Writes, under RUN_DIR:
 * value-train/checkpoint.safetensors (atomic, every `checkpointEvery` steps), value-train/loss.svg,
 * value-train/report.json, and value-codebook-{bits}bit.arrow. With a `collective` of W ranks, every rank calls it
 * alike, each runs B/W of a step's B windows, and only rank 0 writes; a checkpoint records B, not W, so a run resumes
 * on any W that divides B.
 *
 *   await trainValue({ runDir: 'runs/a', modelDir: 'tiny-llama', corpus: 'c.jsonl', backend, bits: 1, steps: 100 });
 */
export async function trainValue(o: TrainValueOptions): Promise<TrainValueResult> {
  if (o.lr !== undefined) checkNumberOption('lr', o.lr, LR_RULE); // before anything is read or written
  if (o.batch !== undefined) checkNumberOption('batch', o.batch, { integer: true, min: 1 });
  const manifest = readManifest(o.runDir);
  if (!manifest) throw new CommvqError(`${o.runDir}: not a run folder (no manifest.json)`, 'run commvq collect-kv and make-scale first');
  const scales = readScales(o.runDir, 'value');
  const { config, model, tokenizer } = loadModel(o.modelDir, { backend: o.backend, allowNonFinite: o.allowNonFinite });
  const configHash = fileHash(join(o.modelDir, 'config.json'));
  if (configHash !== manifest.model.configHash) throw new CommvqError(`${o.runDir}: was collected from a different model (${manifest.model.path})`);
  const D = config.numKvHeads * config.headDim;
  const shape = compressorShape(o.bits, D);
  const layers = parseLayerList(o.layers, config.numLayers).filter((l) => scales.has(l));
  if (layers.length === 0) throw new CommvqError(`${o.runDir}: make-scale has no value scale for the layers asked for`);
  const seed = o.seed ?? DEFAULT_SEED;
  const seqLen = o.seqLen ?? 8192;
  const settings: OptimizerSettings & { seed: number } = {
    ...DEFAULT_OPTIMIZER,
    lr: o.lr ?? DEFAULT_OPTIMIZER.lr,
    schedule: o.schedule ?? (o.bits === 1 ? 'cosine' : 'constant'),
    warmup: o.warmup ?? (o.bits === 1 ? 100 : 10000),
    steps: o.steps,
    seed,
  };
  const ops = await createTrainOps(o.backend);
  const dir = join(o.runDir, 'value-train');
  const lead = (o.collective?.rank ?? 0) === 0; // the one rank that writes
  const world = o.collective?.worldSize ?? 1;
  if (lead) mkdirSync(dir, { recursive: true });
  const checkpoint = join(dir, `checkpoint-${o.bits}bit.safetensors`);

  const state = new Map<number, LayerState>();
  for (const l of layers) {
    const scale = scales.get(l)!;
    checkScale(scale, D, join(o.runDir, 'scale.arrow'));
    state.set(l, newLayerState(ops, shape, initCompressor(o.backend, shape, seed * 1000 + l), o.backend.fromArray(scale, [D], 'f32')));
  }
  let info: CheckpointInfo = { step: 0, bits: o.bits, seed, configHash, layers, history: [], batch: o.batch ?? world };
  if (o.resume) {
    info = loadCheckpoint(checkpoint, o.backend, shape, state);
    info.batch ??= 1; // checkpoints from before data parallelism: one window per step
    if (info.bits !== o.bits || info.seed !== seed || info.layers.join() !== layers.join()) {
      throw new CommvqError(`${checkpoint}: was trained with bits ${info.bits}, seed ${info.seed}, layers ${info.layers.join(',')}; rerun with the same settings`);
    }
    if (o.batch !== undefined && o.batch !== info.batch) throw new OptionError('batch', String(o.batch), `the checkpoint was trained with ${info.batch} windows per step`, 'resume with its batch, or leave the option out');
  } else if (existsSync(checkpoint)) {
    throw new CommvqError(`${checkpoint}: a checkpoint of an earlier run exists`, 'resume it, or delete it to start over');
  }

  const evalWindows = o.evalWindows ?? 2;
  const concat = tokenizer.eosTokenId ?? config.eosTokenIds[0] ?? 0;
  const windows = trainingWindows(o.corpus, o.field ?? 'text', tokenizer, { seqLen, concatTokenId: concat, seed }, evalWindows);
  const heldOut = await windows.heldOut;
  const B = info.batch!;
  if (B % world !== 0) throw new OptionError('batch', String(B), `${B} windows per step do not split over ${world} ranks`, 'give a multiple of the number of GPUs');
  for (let skip = 0; skip < info.step * B; skip++) await windows.next(); // windows already trained on
  const save = () => lead && saveCheckpoint(checkpoint, o.backend, state, info);
  const every = o.checkpointEvery ?? 100;
  // one process, one window per step: the plain step; otherwise the data-parallel one (at W = 1: SingleProcess)
  const dp = o.collective || B > 1 ? { collective: o.collective ?? new SingleProcess(), bucket: new GradientBucket(ops, state) } : undefined;
  let stop = false; // every rank's vote, summed each step, so all stop after the same step
  while (info.step < o.steps && !stop && !(world === 1 && o.signal?.aborted)) {
    const batch: Int32Array[] = [];
    for (let j = 0; j < B; j++) batch.push(await windows.next());
    let losses: StepLosses;
    if (dp) ({ losses, stop } = await parallelStep(model, ops, state, batch, info.step, settings, { ...dp, stop: !!o.signal?.aborted }));
    else losses = trainValueStep(model, ops, state, batch[0]!, info.step, settings);
    info.step++;
    info.history.push({ step: info.step, ...losses });
    o.onStep?.({ step: info.step, ...losses }, o.steps);
    if (info.step % every === 0 || info.step === o.steps) save();
    if (o.signal) await yieldToEvents(); // a step never awaits real I/O: without this a Ctrl-C handler never runs
  }
  if (info.step < o.steps) save(); // interrupted: keep what was done
  dp?.bucket.dispose();
  const result = { codebook: join(o.runDir, valueCodebookFileName(o.bits)), checkpoint, lossPlot: join(dir, `loss-${o.bits}bit.svg`), report: join(dir, `report-${o.bits}bit.json`), stepsDone: info.step, complete: info.step >= o.steps, history: info.history };
  if (!lead) return result; // rank 0 writes the outputs

  const { codebook, lossPlot, report, complete } = result;
  writeFileAtomic(lossPlot, [Buffer.from(lineChartSvg({
    title: `train-value ${o.bits}-bit: losses`, x: 'step', y: 'MSE', logY: true,
    series: [
      { name: 'value MSE / 2 (kv_mse)', points: info.history.map((h) => [h.step, h.valueMse]) },
      { name: 'attention-output MSE (kv_vq)', points: info.history.map((h) => [h.step, h.attentionMse]) },
    ],
  }))]);
  let evaluation: ValueEvaluation[] | undefined;
  if (complete) {
    const host = (t: Parameters<Backend['toFloat32']>[0]) => o.backend.toFloat32(t);
    writeValueCodebook(codebook, shape, [...state].map(([layer, s]) => ({
      layer,
      params: Object.fromEntries(PARAM_NAMES.map((n) => [n, host(s.params[n])])) as Record<(typeof PARAM_NAMES)[number], Float32Array>,
      scale: host(s.scale),
    })), { steps: info.step, seed, lr: settings.lr, schedule: settings.schedule, warmup: settings.warmup, seq_len: seqLen, model: o.modelDir, config_hash: configHash, batch: B });
    evaluation = heldOut.length > 0 ? evaluateValues(model, ops, state, heldOut, shape, seed) : [];
  }
  writeFileAtomic(report, [Buffer.from(JSON.stringify({ bits: o.bits, steps: info.step, batch: B, complete, settings, evaluation, history: info.history }, null, 1))]);
  return { ...result, evaluation };
}

/**
 * The packed windows of the corpus, forever: the first `heldOut` windows are set aside for evaluation and never
 * trained on; training takes the windows after them, and when the corpus ends starts over with the same windows
 * (same seed, same order), so held-out windows stay out of training in every epoch.
 */
function trainingWindows(corpus: string, field: string, tokenizer: Parameters<typeof packWindows>[1], packing: { seqLen: number; concatTokenId: number; seed: number }, heldOut: number) {
  const open = () => packWindows(readCorpus(corpus, { field }), tokenizer, packing)[Symbol.asyncIterator]();
  let it = open();
  let yielded = 0;
  const held = (async () => {
    const out: Int32Array[] = [];
    for (let i = 0; i < heldOut; i++) {
      const r = await it.next();
      if (r.done) throw new CommvqError(`${corpus}: fewer windows than the ${heldOut} held out for evaluation`, 'use a larger corpus, shorter windows or fewer held-out windows');
      out.push(r.value);
    }
    return out;
  })();
  return {
    heldOut: held,
    async next(): Promise<Int32Array> {
      await held;
      for (;;) {
        const r = await it.next();
        if (!r.done) {
          yielded++;
          return r.value;
        }
        if (yielded === 0) throw new CommvqError(`${corpus}: no windows of ${packing.seqLen} tokens left for training after the ${heldOut} held out`, 'use a larger corpus, shorter windows or fewer held-out windows');
        it = open();
        for (let i = 0; i < heldOut; i++) await it.next();
      }
    },
  };
}
