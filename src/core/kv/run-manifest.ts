import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { readJsonFile } from '../io/read-text.js';

/**
 * RUN_DIR/manifest.json: what a run is made from and what each stage has finished. Written atomically after every
 * committed step, so it always describes files that are complete up to the byte counts it records.
 */
export const RUN_FORMAT = 'commvq.run';
export const RUN_FORMAT_VERSION = 1;

export interface RunModel {
  path: string;
  configHash: string;
  tokenizerHash: string;
  architecture: string;
  numLayers: number;
  kvHeads: number;
  headDim: number;
}

export interface CollectState {
  corpus: string;
  field: string;
  seqLen: number;
  seed: number;
  /** token budget per layer, and the windows it takes */
  tokens: number;
  windows: number;
  layers: number[];
  /** windows fully written to every file */
  windowsDone: number;
  /** committed bytes of each kv file (by file name) */
  files: Record<string, number>;
  complete: boolean;
  /**
   * a rank's share of a `commvq launch` job (collect-kv-ranks.ts): its `windows` start at this window of the whole
   * run's packing; absent in a whole run
   */
  firstWindow?: number;
}

export interface RunManifest {
  format: typeof RUN_FORMAT;
  version: number;
  model: RunModel;
  collect?: CollectState;
}

export function manifestPath(runDir: string): string {
  return join(runDir, 'manifest.json');
}

export function readManifest(runDir: string): RunManifest | undefined {
  const path = manifestPath(runDir);
  if (!existsSync(path)) return undefined;
  const json = readJsonFile<RunManifest>(path);
  if (json.format !== RUN_FORMAT) throw new CommvqError(`${path}: not a commvq run manifest`);
  if (json.version !== RUN_FORMAT_VERSION) throw new CommvqError(`${path}: run format version ${json.version}, this commvq reads ${RUN_FORMAT_VERSION}`);
  return json;
}

/** Reads the manifest a later stage needs, with a clear error when the run was not collected (or not finished). */
export function requireCollectedRun(runDir: string): RunManifest & { collect: CollectState } {
  const manifest = readManifest(runDir);
  if (!manifest?.collect) throw new CommvqError(`${runDir}: not a collected run (no manifest.json from commvq collect-kv)`, 'run commvq collect-kv first');
  if (!manifest.collect.complete) throw new CommvqError(`${runDir}: collect-kv has not finished (${manifest.collect.windowsDone}/${manifest.collect.windows} windows)`, 'rerun the same collect-kv command to finish it');
  return manifest as RunManifest & { collect: CollectState };
}

export function writeManifest(runDir: string, manifest: RunManifest): void {
  writeFileAtomic(manifestPath(runDir), [Buffer.from(JSON.stringify(manifest, null, 1))]);
}
