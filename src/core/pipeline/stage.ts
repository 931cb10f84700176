import type { Backend } from '../backend/backend.js';
import type { Bits } from '../commvq/geometry.js';
import type { PipelineSettings } from './settings.js';

/**
 * One stage of `commvq pipeline`: a core function (collect-kv, make-scale, train-key, ...) called with the run's
 * settings, reporting what it produced. Stages find each other's outputs by their fixed names in RUN_DIR, so a
 * resumed run needs nothing from the stages it skips.
 */
export type StageName =
  | 'collect-kv'
  | 'make-scale'
  | 'train-key'
  | `train-value-${Bits}bit`
  | 'agreement'
  | 'eval-niah'
  | 'measure-memory';

export interface StageContext {
  runDir: string;
  modelDir: string;
  corpus: string;
  backend: Backend;
  settings: PipelineSettings;
  /** load weights holding NaN or Inf in every stage (loadModel's allowNonFinite); not a setting the run records */
  allowNonFinite?: boolean;
  signal?: AbortSignal;
  /** the stage's own progress, `done` of `total` units */
  progress(done: number, total: number, detail?: string): void;
}

/** What a stage made: its files (under RUN_DIR), its key numbers, and one line saying what they mean. */
export interface StageOutput {
  headline: string;
  files: string[];
  numbers: Record<string, number | string | null>;
  /** stopped early by the signal: the stage is not recorded as done, and a rerun continues it */
  interrupted?: boolean;
}

export interface PipelineStage {
  name: StageName;
  /** a few words for progress bars: `training key codebooks` */
  label: string;
  run(ctx: StageContext): Promise<StageOutput>;
}
