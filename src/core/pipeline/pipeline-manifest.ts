import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError, OptionError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { checkResumeSettings } from './resume-settings.js';
import type { PipelineSettings } from './settings.js';
import type { StageName, StageOutput } from './stage.js';

/**
 * RUN_DIR/pipeline.json: what a pipeline run was asked to do (model, corpus, settings) and which stages finished,
 * with what each produced. Written atomically after every stage; `--resume` skips the stages it lists as done and
 * refuses settings that differ from those its finished stages ran with (their outputs would not match).
 */
export const PIPELINE_FORMAT = 'commvq.pipeline';
export const PIPELINE_VERSION = 1;
export const PIPELINE_MANIFEST = 'pipeline.json';

export interface StageRecord extends StageOutput {
  seconds: number;
  finished: string;
}

export interface PipelineIdentity {
  /** the model folder (for --demo: RUN_DIR/model, written by the run) */
  model: string;
  demo: boolean;
  /** the corpus file (generated: RUN_DIR/corpus.jsonl) */
  corpus: string;
  generatedCorpus: boolean;
  settings: PipelineSettings;
}

export interface PipelineManifest extends PipelineIdentity {
  format: typeof PIPELINE_FORMAT;
  version: typeof PIPELINE_VERSION;
  created: string;
  stages: Partial<Record<StageName, StageRecord>>;
}

export function readPipelineManifest(runDir: string): PipelineManifest | undefined {
  const path = join(runDir, PIPELINE_MANIFEST);
  if (!existsSync(path)) return undefined;
  let m: PipelineManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as PipelineManifest;
  } catch (err) {
    throw new CommvqError(`${path}: not valid JSON: ${(err as Error).message}`, 'delete it to start the run over');
  }
  if (m.format !== PIPELINE_FORMAT) throw new CommvqError(`${path}: not a commvq pipeline manifest`);
  if (m.version !== PIPELINE_VERSION) throw new CommvqError(`${path}: pipeline manifest version ${m.version}; this commvq reads version ${PIPELINE_VERSION}`, 'start a new run with commvq pipeline --out NEW_DIR');
  return m;
}

export function writePipelineManifest(runDir: string, m: PipelineManifest): void {
  writeFileAtomic(join(runDir, PIPELINE_MANIFEST), [Buffer.from(JSON.stringify(m, null, 1) + '\n')]);
}

/**
 * The manifest to run with: a new one, or (with `resume`) the existing one when it was made for the same model and
 * corpus, and with the same values of the settings its finished stages depend on (resume-settings.ts); other settings
 * take their new values. An existing run without `resume` is refused rather than overwritten — unless it finished no
 * stage: a run that failed at once (a bad corpus, a wrong setting) must not block its corrected rerun.
 *
 *   const m = openPipelineManifest('runs/p', identity, { resume: true });
 */
export function openPipelineManifest(runDir: string, identity: PipelineIdentity, o: { resume: boolean; corpusSize?: (s: PipelineSettings) => number }): PipelineManifest {
  const existing = readPipelineManifest(runDir);
  if (!existing || Object.keys(existing.stages).length === 0) return { format: PIPELINE_FORMAT, version: PIPELINE_VERSION, created: new Date().toISOString(), ...identity, stages: {} };
  if (!o.resume) throw new OptionError('out', runDir, 'holds a pipeline run already', 'resume it, or choose another run folder');
  for (const key of ['model', 'demo', 'corpus', 'generatedCorpus'] as const) {
    if (existing[key] !== identity[key]) throw new OptionError('out', runDir, `was run with ${key} ${JSON.stringify(existing[key])}, not ${JSON.stringify(identity[key])}`, 'choose another run folder');
  }
  const done = Object.keys(existing.stages) as StageName[];
  checkResumeSettings(runDir, existing.settings, identity.settings, done, identity.generatedCorpus ? o.corpusSize : undefined);
  return { ...existing, settings: identity.settings };
}
