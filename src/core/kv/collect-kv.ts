import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, HostStaging } from '../backend/backend.js';
import { corpusFormat, readCorpus } from '../data/corpus.js';
import { packWindows } from '../data/packing.js';
import { CommvqError, OptionError } from '../errors.js';
import { fileHash } from '../io/file-hash.js';
import { parseLayerList } from '../layer-list.js';
import { loadModel } from '../model/load-model.js';
import { DEFAULT_SEED } from '../model/seeded-random.js';
import { findNonFinite } from '../tensor/non-finite.js';
import type { Tensor } from '../tensor/tensor.js';
import { kvFileName, kvSchema } from './kv-format.js';
import { checkResumable } from './kv-integrity.js';
import { KvStreamWriter, writeAllBytes, type WriteBytes } from './kv-writer.js';
import { refuseUnmergedRanks } from './rank-runs.js';
import { readManifest, RUN_FORMAT, RUN_FORMAT_VERSION, writeManifest, type CollectState, type RunManifest, type RunModel } from './run-manifest.js';

export interface CollectKvOptions {
  modelDir: string;
  corpus: string;
  runDir: string;
  backend: Backend;
  /** tokens per layer (default 1,048,576, the reference EM's budget); rounded up to whole windows */
  tokens?: number;
  seqLen?: number;
  /** layer selection, e.g. `0-3,31` (default all) */
  layers?: string;
  field?: string;
  seed?: number;
  /** stops cleanly after the current window (Ctrl-C) */
  signal?: AbortSignal;
  onProgress?: (p: { windowsDone: number; windows: number; tokensPerSecond: number }) => void;
  /** ignore the checkpoint: seeded random weights from config.json (benchmarks at real sizes) */
  randomWeights?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite); non-finite activations are still refused */
  allowNonFinite?: boolean;
  /** how bytes reach the files (tests simulate a full disk) */
  writeBytes?: WriteBytes;
}

export interface CollectKvSummary {
  runDir: string;
  windows: number;
  windowsDone: number;
  tokensPerLayer: number;
  layers: number[];
  complete: boolean;
  /** the corpus ran out before the budget */
  shortOfBudget: boolean;
  resumedFrom: number;
  files: string[];
}

const DEFAULT_TOKENS = 1 << 20;
export const DEFAULT_SEQ_LEN = 8192;

/** The windows a run's token budget takes (the last one whole). */
export function budgetWindows(o: Pick<CollectKvOptions, 'tokens' | 'seqLen'>): number {
  return Math.ceil((o.tokens ?? DEFAULT_TOKENS) / (o.seqLen ?? DEFAULT_SEQ_LEN));
}

/**
 * Runs the model over packed windows of a corpus and streams each layer's pre-RoPE keys and values (Float16) into
 * Arrow files in RUN_DIR/kv (see kv-format.ts). After every window all files are flushed and the manifest records
 * their byte counts; a rerun of the same command truncates past those counts and continues, so an interrupted run
 * ends with the same files as an uninterrupted one.
 *
 *   await collectKv({ modelDir: 'Llama-3.1-8B-Instruct', corpus: 'fineweb.parquet', runDir: 'runs/a', backend });
 */
export async function collectKv(o: CollectKvOptions): Promise<CollectKvSummary> {
  refuseUnmergedRanks(o.runDir);
  return collectKvWindows(o);
}

/**
 * The windows `[first, first + windows)` of the run's packing, collected into `o.runDir` as a run of its own whose
 * files' `seq` column holds the windows' places in the whole run (a rank's share under `commvq launch`,
 * collect-kv-ranks.ts); without `range`, the whole run (collectKv). A range the corpus does not reach ends with
 * fewer windows, or none, and no error: only the whole job can tell that the corpus is shorter than one window.
 */
export async function collectKvWindows(o: CollectKvOptions, range?: { first: number; windows: number }): Promise<CollectKvSummary> {
  const loaded = loadModel(o.modelDir, { backend: o.backend, randomWeights: o.randomWeights, allowNonFinite: o.allowNonFinite });
  const { config, model, tokenizer } = loaded;
  const seqLen = o.seqLen ?? DEFAULT_SEQ_LEN;
  if (seqLen > config.maxPositionEmbeddings) throw new OptionError('seqLen', String(seqLen), `longer than the model's context of ${config.maxPositionEmbeddings}`);
  const tokens = o.tokens ?? DEFAULT_TOKENS;
  const concatTokenId = tokenizer.eosTokenId ?? config.eosTokenIds[0];
  if (concatTokenId === undefined) throw new CommvqError(`${o.modelDir}: the tokenizer names no eos_token to place between documents`);
  corpusFormat(o.corpus); // a missing or unreadable corpus is refused before the run folder is touched
  const wanted: CollectState = {
    corpus: o.corpus,
    field: o.field ?? 'text',
    seqLen,
    seed: o.seed ?? DEFAULT_SEED,
    tokens,
    windows: range ? range.windows : budgetWindows(o),
    layers: parseLayerList(o.layers, config.numLayers),
    windowsDone: 0,
    files: {},
    complete: false,
    ...(range ? { firstWindow: range.first } : {}),
  };
  const first = range?.first ?? 0;
  const runModel: RunModel = {
    path: o.modelDir,
    configHash: fileHash(join(o.modelDir, 'config.json')),
    tokenizerHash: fileHash(join(o.modelDir, 'tokenizer.json')),
    architecture: config.architecture,
    numLayers: config.numLayers,
    kvHeads: config.numKvHeads,
    headDim: config.headDim,
  };
  const manifest = startOrResume(o.runDir, runModel, wanted);
  const state = manifest.collect!;
  checkResumable(o.runDir, state); // a truncated file would be extended with zeros, or a finished run reported whole
  const resumedFrom = state.windowsDone;
  const summary = (): CollectKvSummary => ({
    runDir: o.runDir,
    windows: state.windows,
    windowsDone: state.windowsDone,
    tokensPerLayer: state.windowsDone * seqLen,
    layers: state.layers,
    complete: state.complete,
    shortOfBudget: state.complete && state.windowsDone < state.windows,
    resumedFrom,
    files: state.layers.flatMap((l) => (['key', 'value'] as const).map((k) => join(o.runDir, 'kv', kvFileName(k, l)))),
  });
  if (state.complete) return summary();

  const writers = new Map<string, KvStreamWriter>();
  let staging: HostStaging[] = [];
  const write = o.writeBytes ?? writeAllBytes;
  try {
    for (const layer of state.layers) {
      for (const kind of ['key', 'value'] as const) {
        const name = kvFileName(kind, layer);
        const schema = kvSchema({
          kind, layer, layout: 'HF', rope: kind === 'key' ? 'pre' : 'none', dtype: 'f16', kvHeads: config.numKvHeads, headDim: config.headDim,
          seqLen, model: o.modelDir, configHash: runModel.configHash, tokenizerHash: runModel.tokenizerHash, corpus: o.corpus, seed: state.seed,
        });
        writers.set(name, await KvStreamWriter.open(join(o.runDir, 'kv', name), schema, state.files[name], write));
        state.files[name] = writers.get(name)!.bytes;
      }
    }
    // the manifest is first written with the first committed window: a run that fails before (a corpus that cannot
    // be read, or too short) records no settings that would refuse its corrected rerun

    const selected = new Set(state.layers);
    const started = performance.now();
    let index = 0;
    // window i's files are written and committed while window i + 1 is computed; each window is downloaded into
    // one of two staging areas (pinned on a GPU), written from there, and the area is reused two windows later
    const fileBytes = seqLen * config.numKvHeads * config.headDim * 2;
    staging = [o.backend.allocStaging(fileBytes * selected.size * 2), o.backend.allocStaging(fileBytes * selected.size * 2)];
    let committing: Promise<void> = Promise.resolve();
    const commit = async (done: number, ids: Int32Array, values: Map<string, Uint16Array>): Promise<void> => {
      await Promise.all([...values].map(([name, x]) => writers.get(name)!.appendWindow(first + done, ids, x)));
      await Promise.all([...writers.values()].map((w) => w.sync()));
      state.windowsDone = done + 1;
      for (const [name, w] of writers) state.files[name] = w.bytes;
      writeManifest(o.runDir, manifest);
      const seconds = (performance.now() - started) / 1000;
      o.onProgress?.({ windowsDone: state.windowsDone, windows: state.windows, tokensPerSecond: ((state.windowsDone - resumedFrom) * seqLen) / seconds });
    };
    let computed = state.windowsDone;
    const windows = packWindows(readCorpus(o.corpus, { field: state.field }), tokenizer, { seqLen, concatTokenId, seed: state.seed });
    for await (const ids of windows) {
      if (computed >= state.windows || o.signal?.aborted) break;
      if (index++ < first + state.windowsDone) continue; // another rank's, or committed before a restart: the packing replays the same windows
      // f16 copies are made on the backend during the forward and read back after it, so a GPU is not stalled
      const captured = new Map<string, Tensor>();
      const cache = model.createDenseCache(seqLen);
      const logits = model.forward(ids, cache, {
        logits: 'last',
        observe: (layer, kv) => {
          if (!selected.has(layer)) return;
          captured.set(kvFileName('key', layer), o.backend.cast(kv.kPre, 'f16'));
          captured.set(kvFileName('value', layer), o.backend.cast(kv.v, 'f16'));
        },
      });
      logits.dispose();
      cache.dispose();
      const area = staging[computed % 2]!.bytes; // its last writer, window computed − 2, has committed
      const values = new Map<string, Uint16Array>();
      [...captured].forEach(([name, t], i) => {
        const dst = area.subarray(i * fileBytes, (i + 1) * fileBytes);
        o.backend.downloadAsync(t, dst);
        values.set(name, new Uint16Array(dst.buffer, dst.byteOffset, fileBytes / 2));
      });
      o.backend.synchronize();
      captured.forEach((t) => t.dispose());
      await committing; // the previous window is on disk before this one is appended
      refuseNonFiniteKv(values, state.layers, first + computed, config.numKvHeads * config.headDim, o.modelDir);
      committing = commit(computed++, ids, values);
    }
    await committing;
    if (o.signal?.aborted && state.windowsDone < state.windows) return summary();
    if (state.windowsDone === 0 && !range) throw new CommvqError(`${o.corpus}: fewer tokens than one window of ${seqLen}`, 'use a larger corpus or shorter windows');
    for (const w of writers.values()) await w.finish();
    writers.clear();
    state.complete = true;
    writeManifest(o.runDir, manifest);
    return summary();
  } finally {
    for (const w of writers.values()) w.close();
    staging.forEach((s) => s.dispose());
  }
}

/**
 * Throws before a window with NaN or Inf in its keys or values is written (the earlier windows stay committed, so
 * nothing is half-written), naming the layer and the token position in the window. The f16 copies are checked, so a
 * finite value past f16's ±65504, which the files could not hold either, is refused too.
 */
function refuseNonFiniteKv(values: ReadonlyMap<string, Uint16Array>, layers: readonly number[], window: number, rowWidth: number, modelDir: string): void {
  for (const layer of layers) {
    for (const kind of ['key', 'value'] as const) {
      const { count, first } = findNonFinite(values.get(kvFileName(kind, layer))!, 'f16');
      if (count === 0) continue;
      throw new CommvqError(
        `${modelDir}: layer ${layer}'s ${kind}s are not finite at position ${Math.floor(first / rowWidth)} of window ${window} (${count} NaN/Inf in f16); nothing of that window was written`,
        'the model computes NaN or values past f16\'s range: check its weights (are they loaded with --allow-nonfinite?)',
      );
    }
  }
}

/**
 * A fresh manifest, or the existing one when it describes the same model and collection. A manifest that records no
 * committed window (left by an earlier version before its run failed) holds nothing to keep and is replaced.
 */
function startOrResume(runDir: string, model: RunModel, wanted: CollectState): RunManifest {
  mkdirSync(join(runDir, 'kv'), { recursive: true });
  const existing = readManifest(runDir);
  if (!existing || (existing.collect && existing.collect.windowsDone === 0 && !existing.collect.complete)) return { format: RUN_FORMAT, version: RUN_FORMAT_VERSION, model, collect: wanted };
  if (existing.model.configHash !== model.configHash || existing.model.tokenizerHash !== model.tokenizerHash) {
    throw new CommvqError(`${runDir}: collected from a different model (${existing.model.path}); use a new RUN_DIR`);
  }
  const had = existing.collect;
  if (!had) return { ...existing, collect: wanted };
  for (const key of ['corpus', 'field', 'seqLen', 'seed', 'tokens', 'windows', 'firstWindow'] as const) {
    if (had[key] !== wanted[key]) throw new CommvqError(`${runDir}: was collected with ${key} ${JSON.stringify(had[key])}, not ${JSON.stringify(wanted[key])}; use a new RUN_DIR`);
  }
  if (had.layers.join(',') !== wanted.layers.join(',')) throw new CommvqError(`${runDir}: was collected for layers ${had.layers.join(',')}; use a new RUN_DIR`);
  return existing;
}
