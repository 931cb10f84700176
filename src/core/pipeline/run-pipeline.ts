import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { corpusFormat } from '../data/corpus.js';
import { CommvqError, OptionError } from '../errors.js';
import { parseModelConfig } from '../model/config.js';
import { DEMO_CONFIG, writeDemoModel } from '../model/demo-model.js';
import { readJson } from '../tokenizer/text-tokenizer.js';
import { agreementStage } from './agreement.js';
import { collectStage, scaleStage } from './collect-stages.js';
import { writeGeneratedCorpus } from './demo-corpus.js';
import { keyStage } from './key-stage.js';
import { memoryStage } from './memory-stage.js';
import { niahStage } from './niah-stage.js';
import { openPipelineManifest, readPipelineManifest, writePipelineManifest } from './pipeline-manifest.js';
import { checkSettingsFit, pipelineSettings, type PipelineSettings } from './settings.js';
import type { PipelineStage, StageName } from './stage.js';
import { pipelineSummary, writePipelineSummary, type PipelineSummary } from './summary.js';
import { valueStage } from './value-stage.js';

export interface PipelineOptions {
  /** RUN_DIR: every stage writes under it */
  out: string;
  /** a Hugging Face model folder; absent: the embedded demo model, written to RUN_DIR/model */
  modelDir?: string;
  /** a corpus (as collect-kv reads); absent: filler text generated into RUN_DIR/corpus.jsonl */
  corpus?: string;
  backend: Backend;
  /** changes to the defaults, or with `resume` to the run's own settings (left out or undefined: kept) */
  settings?: Partial<PipelineSettings>;
  /** continue RUN_DIR's run, skipping the stages it finished */
  resume?: boolean;
  /** load weights holding NaN or Inf (loadModel's allowNonFinite) */
  allowNonFinite?: boolean;
  /** stops after the current stage's current step (Ctrl-C); a rerun with `resume` continues */
  signal?: AbortSignal;
  onProgress?: (p: PipelineProgress) => void;
  onStage?: (e: PipelineStageEvent) => void;
}

export interface PipelineProgress {
  stage: StageName;
  label: string;
  done: number;
  total: number;
  detail?: string;
}

export interface PipelineStageEvent {
  stage: StageName;
  label: string;
  /** 1-based position among `stages` */
  index: number;
  stages: number;
  status: 'start' | 'done' | 'skipped' | 'interrupted';
  seconds?: number;
  headline?: string;
}

/**
 * `commvq pipeline` as a library call: every stage of CommVQ in order on one model and corpus — collect-kv →
 * make-scale → train-key → train-value (each bit width) → greedy agreement with the dense cache → eval niah →
 * measure-memory — each by the core function its command calls. Each finished stage is recorded in
 * RUN_DIR/pipeline.json; the run ends with RUN_DIR/summary.json (what each stage produced, and where).
 *
 *   const summary = await runPipeline({ out: 'runs/demo', backend: await createBackend('auto') });
 *   summary.stages.find((s) => s.stage === 'agreement')?.numbers   // { agreement_1bit: 0.42, ... }
 */
export async function runPipeline(o: PipelineOptions): Promise<PipelineSummary> {
  const started = performance.now();
  // a resumed run keeps its own settings, except those given (which resume-settings.ts may refuse)
  const settings = pipelineSettings(o.settings, o.resume ? readPipelineManifest(o.out)?.settings : undefined);
  if (o.modelDir !== undefined && !(existsSync(o.modelDir) && statSync(o.modelDir).isDirectory())) throw new CommvqError(`${o.modelDir}: model folder not found`);
  if (o.corpus !== undefined) corpusFormat(o.corpus); // a missing or unreadable corpus is refused before any work
  if (existsSync(o.out) && !statSync(o.out).isDirectory()) throw new OptionError('out', o.out, 'not a folder', 'choose another run folder');
  const modelDir = o.modelDir ?? join(o.out, 'model');
  const corpus = o.corpus ?? join(o.out, 'corpus.jsonl');
  const identity = { model: modelDir, demo: o.modelDir === undefined, corpus, generatedCorpus: o.corpus === undefined, settings };
  const configPath = identity.demo ? 'the demo model' : join(modelDir, 'config.json');
  const config = parseModelConfig(identity.demo ? DEMO_CONFIG : readJson(configPath), configPath);
  checkSettingsFit(settings, config.maxPositionEmbeddings, configPath);
  const manifest = openPipelineManifest(o.out, identity, { resume: o.resume ?? false, corpusSize: corpusChars });
  mkdirSync(o.out, { recursive: true });
  // both are made by code, the same bytes every time: a resumed run may rewrite them without changing a hash
  if (identity.demo && !existsSync(join(modelDir, 'model.safetensors'))) writeDemoModel(modelDir);
  if (identity.generatedCorpus && !existsSync(corpus)) writeGeneratedCorpus(corpus, corpusChars(settings));
  writePipelineManifest(o.out, manifest);

  const stages = pipelineStages(settings);
  const ran = new Set<StageName>();
  let interrupted = false;
  for (const [i, stage] of stages.entries()) {
    const event = { stage: stage.name, label: stage.label, index: i + 1, stages: stages.length };
    const done = manifest.stages[stage.name];
    if (done) {
      o.onStage?.({ ...event, status: 'skipped', seconds: done.seconds, headline: done.headline });
      continue;
    }
    if (o.signal?.aborted) {
      interrupted = true;
      break;
    }
    o.onStage?.({ ...event, status: 'start' });
    const t0 = performance.now();
    const output = await stage.run({
      runDir: o.out, modelDir, corpus, backend: o.backend, settings, allowNonFinite: o.allowNonFinite, signal: o.signal,
      progress: (doneUnits, total, detail) => o.onProgress?.({ stage: stage.name, label: stage.label, done: doneUnits, total, detail }),
    });
    const seconds = (performance.now() - t0) / 1000;
    if (output.interrupted) {
      o.onStage?.({ ...event, status: 'interrupted', seconds });
      interrupted = true;
      break;
    }
    const { interrupted: _, ...result } = output;
    manifest.stages[stage.name] = { ...result, seconds, finished: new Date().toISOString() };
    writePipelineManifest(o.out, manifest);
    ran.add(stage.name);
    o.onStage?.({ ...event, status: 'done', seconds, headline: output.headline });
  }
  const summary = pipelineSummary(manifest, stages.map((s) => s.name), { runDir: o.out, device: o.backend.device, ran, interrupted, seconds: (performance.now() - started) / 1000 });
  writePipelineSummary(o.out, summary);
  return summary;
}

/** The stages of a run, in order. */
export function pipelineStages(s: PipelineSettings): PipelineStage[] {
  return [collectStage, scaleStage, keyStage, ...s.bits.map(valueStage), agreementStage, niahStage, memoryStage];
}

/** Characters of generated corpus: room for collect-kv's budget and train-value's windows at ~4.5 characters a token. */
function corpusChars(s: PipelineSettings): number {
  return 6 * Math.max(s.collectTokens + s.collectSeqLen, (s.valueEvalWindows + s.valueSteps + 1) * s.valueSeqLen);
}

