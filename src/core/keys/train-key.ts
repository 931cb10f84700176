import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { keyCodebookFileName, RESIDUALS_FOR_BITS, type Bits, type KeyMethod } from '../commvq/geometry.js';
import { CommvqError, OptionError } from '../errors.js';
import { partialPath, writeFileAtomic } from '../io/atomic-write.js';
import { readKvRows } from '../kv/kv-reader.js';
import { requireCollectedRun } from '../kv/run-manifest.js';
import { parseLayerList } from '../layer-list.js';
import { DEFAULT_SEED, SeededRandom } from '../model/seeded-random.js';
import { HALF_SIZE, LayerKeyCodebook } from './codebook.js';
import { CpuEmBackend } from './cpu-em.js';
import { e2eData, E2E_DEFAULTS, trainE2e, type E2eConfig } from './e2e.js';
import { EM_DEFAULTS, streamSeed, trainGroupEm, type EmConfig, type StageResult } from './em.js';
import { stageErrors, type StageErrors } from './encoder.js';
import { readKeyCodebook, writeKeyCodebook, type KeyCodebookMeta } from './format.js';
import { prepareKeys } from './layout.js';
import { Interrupted, stopPoint } from '../stop-point.js';
import type { Collective } from '../parallel/collective.js';
import { formatKeyReport, relativeErrors, type KeyReport, type LayerKeyReport } from './report.js';

/**
 * `commvq train-key` as a library call: for each layer, read the collected pre-RoPE keys (RUN_DIR/kv), train the
 * key codebook by EM (spec §3, on the CPU or the GPU) and, for `e2e`, refine it end to end (e2e.ts, CPU), then
 * score it on held-out tokens with the shared encoder. Writes RUN_DIR/key-codebook-{method}-{bits}bit.arrow and the
 * report beside it (`.report.json`) when every layer is done; until then both are kept under `.partial` names after
 * every layer (what `resume` continues from), so a stopped or failed run never leaves part of a codebook under the
 * name generate, train-value's users and the pipeline take for a whole one.
 *
 *   const { report, table } = await trainKey({ runDir: 'runs/llama', method: 'em', bits: 1, backend });
 */

export interface TrainKeyOptions {
  runDir: string;
  method: KeyMethod;
  bits: Bits;
  /** R (default 11 for 1 bit, 21 for 2 bits) */
  residuals?: number;
  /** layer selection like `0-3,31` (default: every collected layer) */
  layers?: string;
  /** training tokens per layer (default 1,048,576, the reference's cap) */
  tokens?: number;
  /** held-out tokens per layer for the report (default 16,384, at most an eighth of what was collected) */
  heldout?: number;
  seed?: number;
  backend: Backend;
  em?: Partial<EmConfig>;
  e2e?: Partial<E2eConfig>;
  onProgress?: (done: number, total: number) => void;
  /**
   * aborting stops at the next EM step (or E2E batch): the files then hold every finished layer, and `resume`
   * trains the layer in progress again from its start (its seeds make that the same result)
   */
  signal?: AbortSignal;
  /** keep the layers an earlier run with the same settings finished (its codebook and report) and train the rest */
  resume?: boolean;
  /**
   * the ranks of a `commvq launch` job: rank r trains the layers at places r, r + W, … of the list, each rank keeps
   * its finished layers in its own partial files (`….partial.rank-r`), and once every rank is done rank 0 gathers them
   * and writes the codebook and report (a shared run folder). A layer's result does not depend on the rank.
   */
  collective?: Collective;
}

export interface TrainKeyResult {
  codebook: string;
  reportPath: string;
  report: KeyReport;
  /** false when the signal stopped the run before its last layer (rerun with resume to finish) */
  complete: boolean;
  /** the report as a readable table */
  table: string;
}

const DEFAULT_TOKENS = 1 << 20;
const DEFAULT_HELDOUT = 16384;

export async function trainKey(o: TrainKeyOptions): Promise<TrainKeyResult> {
  const manifest = requireCollectedRun(o.runDir);
  const residuals = o.residuals ?? RESIDUALS_FOR_BITS[o.bits];
  if (!(residuals >= 1)) throw new OptionError('residuals', String(residuals), 'must be at least 1');
  const layers = parseLayerList(o.layers, manifest.model.numLayers);
  const missing = layers.filter((l) => !manifest.collect.layers.includes(l));
  if (missing.length) throw new CommvqError(`${o.runDir}: layer ${missing.join(', ')} was not collected (collected: ${manifest.collect.layers.join(',')})`);
  const { headDim, kvHeads } = manifest.model;
  const seed = o.seed ?? DEFAULT_SEED;
  const run: LayerRun = {
    o, residuals, seed, headDim, kvHeads,
    tokens: o.tokens ?? DEFAULT_TOKENS,
    heldout: o.heldout ?? DEFAULT_HELDOUT,
    em: { ...EM_DEFAULTS, ...o.em, halfSize: HALF_SIZE },
    e2e: { ...E2E_DEFAULTS, seed, ...o.e2e },
    gpu: o.backend.device.startsWith('cuda') ? await import('./gpu/gpu-layer.js') : undefined,
    progress: new Progress(0, o.onProgress),
  };
  const rank = o.collective?.rank ?? 0;
  const world = o.collective?.worldSize ?? 1;
  const mine = layers.filter((_, i) => i % world === rank);
  run.progress.total = mine.length * (kvHeads * residuals * run.em.maxSteps + (o.method === 'e2e' ? e2eSteps(run.tokens, run.e2e) : 0));
  const path = join(o.runDir, keyCodebookFileName(o.method, o.bits));
  const reportPath = path.replace(/\.arrow$/, '.report.json');
  const meta: KeyCodebookMeta = {
    method: o.method, bits: o.bits, residuals, halfSize: HALF_SIZE, pairs: headDim / 2, headDim, kvHeads, layout: 'PI',
    data: o.runDir, model: manifest.model.path, tokens: run.tokens, heldout: run.heldout, seed,
  };
  const report: KeyReport = { format: 'commvq.key-report', version: 1, codebook: path, method: o.method, bits: o.bits, residuals, seed, device: o.backend.device, layers: [] };
  const codebooks = new Map<number, LayerKeyCodebook>();
  const partial = { codebook: partialPath(path), report: partialPath(reportPath) };
  const own = rank === 0 ? partial : { codebook: `${partial.codebook}.rank-${rank}`, report: `${partial.report}.rank-${rank}` };
  if (o.resume) {
    resumeLayers(existsSync(partial.codebook) ? partial : { codebook: path, report: reportPath }, meta, report, codebooks);
    for (const f of rankPartials(partial)) resumeLayers(f, meta, report, codebooks); // layers other ranks of a stopped job finished
  } else if (rank > 0) {
    rmSync(own.codebook, { force: true }); // an earlier job's, never to be gathered with this one's
    rmSync(own.report, { force: true });
  }
  const gather = async (complete: boolean): Promise<boolean> => // every rank once, done or stopped: true when all are done
    !o.collective || world === 1 ? complete : (await o.collective.allReduceHost(new Float64Array([complete ? 0 : 1])))[0] === 0;
  for (const layer of mine) {
    if (codebooks.has(layer)) continue; // finished by the run resumed
    let trained: Awaited<ReturnType<typeof trainLayer>>;
    try {
      await stopPoint(o.signal);
      trained = await trainLayer(run, layer);
    } catch (e) {
      if (!(e instanceof Interrupted)) throw e;
      await gather(false);
      return { codebook: path, reportPath, report, table: formatKeyReport(report), complete: false };
    }
    const { codebook, layerReport } = trained;
    codebooks.set(layer, codebook);
    report.layers.push(layerReport);
    report.layers.sort((a, b) => a.layer - b.layer);
    writeKeyCodebook(own.codebook, meta, codebooks); // after every layer: a long run keeps what it finished
    writeFileAtomic(own.report, reportBytes(report));
  }
  if (!(await gather(true))) return { codebook: path, reportPath, report, table: formatKeyReport(report), complete: false };
  if (rank > 0) return { codebook: path, reportPath, report, table: formatKeyReport(report), complete: true }; // rank 0 writes
  for (let r = 1; r < world; r++) resumeLayers({ codebook: `${partial.codebook}.rank-${r}`, report: `${partial.report}.rank-${r}` }, meta, report, codebooks); // the other ranks' layers
  report.layers.sort((a, b) => a.layer - b.layer);
  writeKeyCodebook(path, meta, codebooks);
  writeFileAtomic(reportPath, reportBytes(report));
  for (const f of [partial, ...rankPartials(partial)]) {
    rmSync(f.codebook, { force: true });
    rmSync(f.report, { force: true });
  }
  return { codebook: path, reportPath, report, table: formatKeyReport(report), complete: true };
}

/** The partial files ranks 1.. of a `commvq launch` job left beside `partial` (`….partial.rank-r`). */
function rankPartials(partial: { codebook: string; report: string }): { codebook: string; report: string }[] {
  const name = basename(partial.codebook);
  return readdirSync(dirname(partial.codebook))
    .filter((f) => f.startsWith(`${name}.rank-`))
    .map((f) => ({ codebook: join(dirname(partial.codebook), f), report: `${partial.report}${f.slice(name.length)}` }));
}

/**
 * Takes over the finished layers of an earlier run into `codebooks` and `report`, if its codebook was trained with
 * the same settings (method, bits, R, token budgets, seed, data); a different one is an error, not silently mixed.
 */
function resumeLayers(
  { codebook: path, report: reportPath }: { codebook: string; report: string }, meta: KeyCodebookMeta, report: KeyReport, codebooks: Map<number, LayerKeyCodebook>,
): void {
  if (!existsSync(path) || !existsSync(reportPath)) return; // nothing finished yet: a fresh start
  const earlier = readKeyCodebook(path);
  const keys = ['method', 'bits', 'residuals', 'tokens', 'heldout', 'seed', 'data'] as const;
  const differs = keys.filter((k) => earlier.meta[k] !== meta[k]);
  if (differs.length) {
    throw new CommvqError(`${path}: was trained with other settings (${differs.map((k) => `${k} ${earlier.meta[k]} ≠ ${meta[k]}`).join(', ')})`, 'start over without resume, or keep the earlier settings');
  }
  const earlierReport = JSON.parse(readFileSync(reportPath, 'utf8')) as KeyReport;
  for (const layerReport of earlierReport.layers) {
    const codebook = earlier.layers.get(layerReport.layer);
    if (!codebook || codebooks.has(layerReport.layer)) continue;
    codebooks.set(layerReport.layer, codebook);
    report.layers.push(layerReport);
  }
}

function reportBytes(report: KeyReport): Uint8Array[] {
  return [Buffer.from(JSON.stringify(report, null, 1) + '\n')];
}

/** What every layer of one train-key run shares. */
interface LayerRun {
  o: TrainKeyOptions;
  residuals: number;
  seed: number;
  headDim: number;
  kvHeads: number;
  tokens: number;
  heldout: number;
  em: EmConfig;
  e2e: E2eConfig;
  gpu: typeof import('./gpu/gpu-layer.js') | undefined;
  progress: Progress;
}

/** Reads one layer's keys, trains its codebook (EM, then E2E if asked) and scores it on the held-out tokens. */
async function trainLayer(run: LayerRun, layer: number): Promise<{ codebook: LayerKeyCodebook; layerReport: LayerKeyReport }> {
  const { o, residuals, headDim, kvHeads, em, gpu, progress } = run;
  const started = Date.now();
  const what = `${o.runDir}: layer ${layer} keys`;
  const { trainRows, heldRows, nTrain, held } = readLayerKeys(run, layer, what);
  const rngOf = (g: number) => (r: number) => new SeededRandom(streamSeed(run.seed, layer, g, r));
  const base = progress.done;
  const onStep = (g: number, r: number, s: number) => progress.set(base + (g * residuals + r) * em.maxSteps + s + 1);
  const stages = gpu
    ? await gpu.trainLayerEmGpu(o.backend, trainRows, kvHeads, headDim, residuals, rngOf, em, onStep, o.signal)
    : await trainLayerEmCpu(trainRows, kvHeads, headDim, residuals, rngOf, em, onStep, o.signal);
  progress.set(base + kvHeads * residuals * em.maxSteps);
  const emCodebook = new LayerKeyCodebook({ residuals, groups: kvHeads, halfSize: HALF_SIZE, pairs: headDim / 2 });
  stages.forEach((gs, g) => gs.forEach((s, r) => emCodebook.stage(r, g).set(s.theta)));
  const score = (cb: LayerKeyCodebook): StageErrors => (gpu ? gpu.stageErrorsGpu(o.backend, cb, heldRows) : stageErrors(cb, heldRows));
  const emErrors = relativeErrors(score(emCodebook), residuals, kvHeads);
  let codebook = emCodebook;
  let errors = emErrors;
  let e2e: LayerKeyReport['e2e'];
  if (o.method === 'e2e') {
    const e2eBase = progress.done;
    const rows = spreadRows(trainRows, kvHeads * headDim, run.e2e.maxTokens); // E2E trains on at most maxTokens of them
    const result = await trainE2e(e2eData(prepareKeys(rows, kvHeads, headDim, what)), emCodebook, run.e2e, (done) => progress.set(e2eBase + done), o.signal);
    codebook = result.codebook;
    errors = relativeErrors(score(codebook), residuals, kvHeads);
    e2e = {
      em_relative_error: emErrors.layer, valid_loss: result.validLoss, train_loss: result.trainLoss, best_epoch: result.bestEpoch,
      ratio: errors.layer[residuals - 1]! / emErrors.layer[residuals - 1]!,
    };
  }
  const layerReport: LayerKeyReport = {
    layer, train_tokens: nTrain, heldout_tokens: held, seconds: (Date.now() - started) / 1000,
    relative_error: errors.layer, groups: errors.groups.map((relative_error, group) => ({ group, relative_error })),
    em: { steps: stages.map((gs) => gs.map((s) => s.steps)), train_mse: stages.map((gs) => gs.map((s) => s.mse)) },
    ...(e2e ? { e2e } : {}),
  };
  return { codebook, layerReport };
}

/** The EM init draws HALF_SIZE² centres, each from a distinct training token. */
export const EM_MIN_TRAIN_TOKENS = HALF_SIZE * HALF_SIZE;

/**
 * How one layer's `available` tokens (collected, at most `tokens + heldout` of them read) split: held-out rows (at
 * most an eighth, at most `heldout`), training rows (the rest, at most `tokens`), and whether the EM can start. The
 * pipeline checks its settings with it before collecting anything.
 *
 *   keyTokenSplit(4608, 4096, 512)   // { nTrain: 4096, held: 512, enough: true }
 */
export function keyTokenSplit(available: number, tokens: number, heldout: number): { nTrain: number; held: number; enough: boolean } {
  const held = Math.min(heldout, Math.floor(available / 8));
  const nTrain = Math.min(tokens, available - held);
  return { nTrain, held, enough: nTrain >= EM_MIN_TRAIN_TOKENS && held >= 1 };
}

/**
 * One layer's collected keys split into training rows (the first `tokens`) and held-out rows (the last read, at most
 * an eighth of what there is), checked: shape against the manifest, finite values, enough tokens for the centres.
 */
function readLayerKeys(run: LayerRun, layer: number, what: string): { trainRows: Float32Array; heldRows: Float32Array; nTrain: number; held: number } {
  const kv = readKvRows(run.o.runDir, 'key', layer, { maxTokens: run.tokens + run.heldout });
  if (kv.headDim !== run.headDim || kv.kvHeads !== run.kvHeads) {
    throw new CommvqError(`${what}: ${kv.kvHeads} heads of ${kv.headDim}, the manifest says ${run.kvHeads} of ${run.headDim}`);
  }
  checkFinite(kv.rows, kv.width, what);
  const { nTrain, held, enough } = keyTokenSplit(kv.tokens, run.tokens, run.heldout);
  if (!enough) {
    throw new CommvqError(
      `${what}: ${kv.tokens} collected tokens are too few: the EM init draws ${EM_MIN_TRAIN_TOKENS} centres from at least ${EM_MIN_TRAIN_TOKENS} training tokens, plus held-out tokens`,
      `collect at least ${Math.ceil((EM_MIN_TRAIN_TOKENS * 8) / 7)} tokens per layer (commvq collect-kv --tokens)`,
    );
  }
  return { trainRows: kv.rows.subarray(0, nTrain * kv.width), heldRows: kv.rows.subarray(kv.rows.length - held * kv.width), nTrain, held };
}

/** EM of every group of one layer on the CPU: stages[g][r]. */
async function trainLayerEmCpu(
  rows: Float32Array, groups: number, headDim: number, residuals: number,
  rngOf: (g: number) => (r: number) => SeededRandom, cfg: EmConfig, onStep: (g: number, r: number, s: number) => void, signal?: AbortSignal,
): Promise<StageResult[][]> {
  const keys = prepareKeys(rows, groups, headDim);
  const n2 = keys.norms.map((n) => n * n);
  const out: StageResult[][] = [];
  for (const [g, V] of keys.data.entries()) out.push(await trainGroupEm(new CpuEmBackend(V, n2, cfg.halfSize), residuals, rngOf(g), cfg, (r, s) => onStep(g, r, s), signal));
  return out;
}

/** At most `count` rows of `rows` [N, width], evenly spaced (all of them when N ≤ count). */
function spreadRows(rows: Float32Array, width: number, count: number): Float32Array {
  const N = rows.length / width;
  if (N <= count) return rows;
  const out = new Float32Array(count * width);
  for (let i = 0; i < count; i++) {
    const t = Math.floor((i * N) / count);
    out.set(rows.subarray(t * width, (t + 1) * width), i * width);
  }
  return out;
}

function checkFinite(rows: Float32Array, width: number, what: string): void {
  for (let i = 0; i < rows.length; i++) {
    if (!Number.isFinite(rows[i]!)) {
      throw new CommvqError(`${what}: token ${Math.floor(i / width)} holds NaN or infinite values`, 'collect the keys again; the model produced non-finite activations');
    }
  }
}

function e2eSteps(tokens: number, cfg: E2eConfig): number {
  return cfg.epochs * Math.ceil(Math.min(tokens, cfg.maxTokens) / cfg.batchSize);
}

/** Monotone progress over a known total. */
class Progress {
  done = 0;
  constructor(
    public total: number,
    private readonly report?: (done: number, total: number) => void,
  ) {}

  set(done: number): void {
    this.done = Math.max(this.done, Math.min(done, this.total));
    this.report?.(this.done, this.total);
  }
}
