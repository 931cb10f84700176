import { DEFAULT_WINDOW, toBits, type Bits } from '../commvq/geometry.js';
import { OptionError } from '../errors.js';
import { EM_MIN_TRAIN_TOKENS, keyTokenSplit } from '../keys/train-key.js';
import { DEFAULT_SEED } from '../model/seeded-random.js';

/**
 * What a pipeline run trains and measures: every size that decides its outputs. The defaults are tuned so that the
 * whole chain runs on the embedded demo model in a few minutes on two CPU cores; every one of them can be raised
 * (the command's flags, or options here). Key codebooks are always full size (R from the bits: 11 or 21); what is
 * small is how long each trainer runs and how much it sees.
 *
 *   const settings = pipelineSettings({ bits: [1], valueSteps: 100 });
 */

export interface PipelineSettings {
  /** the bit widths trained and evaluated, ascending */
  bits: Bits[];
  /** collect-kv: tokens per layer (rounded up to whole windows) and tokens per window */
  collectTokens: number;
  collectSeqLen: number;
  /** train-key (EM): most E-steps per stage, training and held-out tokens per layer */
  emSteps: number;
  keyTokens: number;
  keyHeldout: number;
  /** R per bit width, overriding the 11 / 21 the bits imply (tests only: smaller codebooks) */
  keyResiduals: Partial<Record<Bits, number>>;
  /** train-value: steps (one window each), tokens per window, held-out windows for its report */
  valueSteps: number;
  valueSeqLen: number;
  valueEvalWindows: number;
  /** peak learning rate, log warm-up steps and the schedule after it */
  valueLr: number;
  valueWarmup: number;
  valueSchedule: 'cosine' | 'constant';
  /** agreement: prompt tokens and greedy new tokens, dense cache against CommVQ */
  agreementPromptTokens: number;
  agreementNewTokens: number;
  /** the CommVQ cache's exact window W (the reference: 128) */
  window: number;
  /** eval niah: context lengths (tokens) and depth percents */
  niahLengths: number[];
  niahDepths: number[];
  /** measure-memory: contexts (tokens per sequence), decoded tokens after each */
  memoryContexts: number[];
  memoryDecodeTokens: number;
  /** seed of the packing shuffles, the EM draws and the value initialisation */
  seed: number;
}

/** The demo defaults: about three minutes on two CPU cores for 1 and 2 bits (see the pipeline report). */
export const PIPELINE_DEFAULTS: PipelineSettings = {
  bits: [1, 2],
  collectTokens: 4608, // 9 windows: the EM's 4096 centres need 4096 training tokens, plus an eighth held out
  collectSeqLen: 512,
  emSteps: 2,
  keyTokens: 4096,
  keyHeldout: 512,
  keyResiduals: {},
  valueSteps: 16,
  valueSeqLen: 256,
  valueEvalWindows: 1,
  // train-value's defaults (1e-3; warm-up 100 or 10,000 steps) are for runs of 10^5 steps: a short run needs a
  // short warm-up and a larger rate to move from the initialisation at all (demo, 32 steps: held-out relative
  // value error 2.07 → 0.50 at 1 bit, against 1.91 with the defaults)
  valueLr: 1e-2,
  valueWarmup: 2,
  valueSchedule: 'constant',
  agreementPromptTokens: 300,
  agreementNewTokens: 300, // positions 0..599 with W = 128: four flushes (two in the prefill, two while decoding)
  window: DEFAULT_WINDOW,
  niahLengths: [512, 1024],
  niahDepths: [0, 100],
  memoryContexts: [8192],
  memoryDecodeTokens: 16,
  seed: DEFAULT_SEED,
};

/**
 * `base` (the defaults, or a resumed run's own settings) with `changes` applied, checked: one clear line for a value
 * that cannot run.
 */
export function pipelineSettings(changes: Partial<PipelineSettings> = {}, base: PipelineSettings = PIPELINE_DEFAULTS): PipelineSettings {
  const defined = Object.entries(changes).filter(([, v]) => v !== undefined); // an option left out keeps base's value
  const s: PipelineSettings = { ...base, ...(Object.fromEntries(defined) as Partial<PipelineSettings>) };
  s.bits = [...new Set(s.bits.map(toBits))].sort((a, b) => a - b);
  if (s.bits.length === 0) throw new OptionError('bits', undefined, 'give at least one bit width');
  const positive = ['collectTokens', 'collectSeqLen', 'emSteps', 'keyTokens', 'keyHeldout', 'valueSteps', 'valueSeqLen', 'valueWarmup', 'agreementPromptTokens', 'agreementNewTokens', 'window'] as const;
  for (const key of positive) {
    if (!Number.isInteger(s[key]) || s[key] < 1) throw new OptionError(key, String(s[key]), 'must be a positive whole number');
  }
  if (!(s.valueLr > 0)) throw new OptionError('valueLr', String(s.valueLr), 'must be positive');
  if (s.niahLengths.length === 0) throw new OptionError('niahLengths', undefined, 'eval niah needs at least one length');
  if (s.niahDepths.length === 0) throw new OptionError('niahDepths', undefined, 'eval niah needs at least one depth');
  if (s.memoryContexts.length === 0 || s.memoryContexts.some((c) => !(c >= 1))) throw new OptionError('memoryContexts', s.memoryContexts.join(','), 'measure-memory needs positive contexts');
  checkKeyTokens(s);
  return s;
}

/**
 * train-key's EM needs EM_MIN_TRAIN_TOKENS training tokens plus held-out ones per layer; collect-kv collects whole
 * windows. Checked here so that a budget too small fails before collect-kv runs, not after it (issue 17, item 5).
 */
function checkKeyTokens(s: PipelineSettings): void {
  if (s.keyTokens < EM_MIN_TRAIN_TOKENS) throw new OptionError('keyTokens', String(s.keyTokens), `the EM init draws ${EM_MIN_TRAIN_TOKENS} centres from at least as many training tokens`);
  const collected = (tokens: number) => Math.ceil(tokens / s.collectSeqLen) * s.collectSeqLen;
  const enough = (tokens: number) => keyTokenSplit(Math.min(collected(tokens), s.keyTokens + s.keyHeldout), s.keyTokens, s.keyHeldout).enough;
  if (enough(s.collectTokens)) return;
  let least = collected(s.collectTokens);
  while (!enough(least)) least += s.collectSeqLen; // ends: keyTokens + keyHeldout tokens are always enough
  throw new OptionError(
    'collectTokens', String(s.collectTokens),
    `too few for train-key, whose EM draws ${EM_MIN_TRAIN_TOKENS} centres from as many training tokens plus an eighth held out: collect at least ${least} (${least / s.collectSeqLen} windows of ${s.collectSeqLen})`,
  );
}

/**
 * Refuses, before any stage runs, a setting the model's context cannot hold (each stage would refuse it too, but
 * only after the stages before it had run).
 *
 *   checkSettingsFit(settings, 8192, 'runs/p/model/config.json')
 */
export function checkSettingsFit(s: PipelineSettings, context: number, source: string): void {
  // [option, its value, the tokens it asks the context to hold]
  const asks: [keyof PipelineSettings, number, number][] = [
    ['collectSeqLen', s.collectSeqLen, s.collectSeqLen],
    ['valueSeqLen', s.valueSeqLen, s.valueSeqLen],
    ['agreementNewTokens', s.agreementNewTokens, s.agreementPromptTokens + s.agreementNewTokens],
    ...s.niahLengths.map((l): [keyof PipelineSettings, number, number] => ['niahLengths', l, l]),
    ...s.memoryContexts.map((c): [keyof PipelineSettings, number, number] => ['memoryContexts', c, c]),
  ];
  for (const [option, value, tokens] of asks) {
    const held = tokens === value ? '' : ` (${tokens} tokens with the agreement prompt)`;
    if (tokens > context) throw new OptionError(option, String(value), `beyond the model's context of ${context} tokens${held} (max_position_embeddings in ${source})`);
  }
}
