import { OptionError } from '../errors.js';
import type { PipelineSettings } from './settings.js';
import type { StageName } from './stage.js';

/**
 * Which settings each stage's outputs depend on, so that `--resume` can take new values for the stages still to run
 * and refuse new values for the ones already done (their files would not match the settings the run records). A
 * stage's inputs from earlier stages need no entry: stages finish in order, so an earlier stage is done whenever a
 * later one is. The generated corpus counts as collect-kv's input: its size follows the settings in `corpusSize`.
 */
type SettingKey = keyof PipelineSettings;

const STAGE_SETTINGS: Record<string, readonly SettingKey[]> = {
  'collect-kv': ['collectTokens', 'collectSeqLen', 'seed'],
  'make-scale': [],
  'train-key': ['bits', 'emSteps', 'keyTokens', 'keyHeldout', 'keyResiduals', 'seed'],
  'train-value': ['valueSteps', 'valueSeqLen', 'valueEvalWindows', 'valueLr', 'valueWarmup', 'valueSchedule', 'seed'],
  agreement: ['bits', 'agreementPromptTokens', 'agreementNewTokens', 'window'],
  'eval-niah': ['bits', 'niahLengths', 'niahDepths', 'window'],
  'measure-memory': ['bits', 'memoryContexts', 'memoryDecodeTokens', 'window'],
};

function settingsOf(stage: StageName): readonly SettingKey[] {
  return STAGE_SETTINGS[stage.startsWith('train-value-') ? 'train-value' : stage] ?? [];
}

/**
 * Refuses a resume whose `want` settings differ from the run's `had` in a setting a finished stage depends on: one
 * OptionError naming the first such setting, the value the run used and the stage. Any other change is allowed.
 * `corpusSize` (generated corpus only) gives the corpus each set of settings would generate.
 *
 *   checkResumeSettings('runs/p', had, { ...had, collectTokens: 5000 }, ['collect-kv'])
 *   // throws OptionError: collectTokens 5000: runs/p ran collect-kv with 4608 ...
 */
export function checkResumeSettings(
  runDir: string, had: PipelineSettings, want: PipelineSettings, done: StageName[], corpusSize?: (s: PipelineSettings) => number,
): void {
  const differs = (k: SettingKey) => JSON.stringify(had[k]) !== JSON.stringify(want[k]);
  for (const stage of done) {
    const key = settingsOf(stage).find(differs);
    if (key) throw changed(runDir, key, want, `ran ${stage} with ${show(had[key])}`);
  }
  if (corpusSize && done.includes('collect-kv') && corpusSize(had) !== corpusSize(want)) {
    const keys = (Object.keys(want) as SettingKey[]).filter(differs);
    const key = keys.find((k) => corpusSize({ ...had, [k]: want[k] }) !== corpusSize(had)) ?? keys[0]!;
    throw changed(runDir, key, want, `generated its corpus for ${show(had[key])}, and collect-kv has read it`);
  }
}

function changed(runDir: string, key: SettingKey, want: PipelineSettings, what: string): OptionError {
  return new OptionError(key, show(want[key]), `${runDir} ${what}`, `resume with the run's value (or without this option), or start a new run folder`);
}

const show = (v: unknown) => (Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v));
