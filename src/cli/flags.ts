import { Flags, type Interfaces } from '@oclif/core';
import { DEFAULT_SEED } from '../core/model/seeded-random.js';
import { CACHE_FLAG_HELP } from './cache-flag.js';
import { integerFlag } from './number-flag.js';

/** Flags several commands share, defined once. */
export const deviceFlag = Flags.string({
  description: 'where to run: auto (a GPU if one is found, else the CPU), cpu, cuda, or cuda:N',
  default: 'auto',
});

export const dtypeFlag = Flags.string({
  description: 'weight dtype: auto keeps the stored dtype on the CPU and uses bf16 on a GPU',
  options: ['auto', 'f32', 'bf16', 'f16'],
  default: 'auto',
});

/**
 * `--random-weights` of the commands that load a model folder (generate, eval *): config.json's shapes, no checkpoint.
 * (measure-memory's takes a config path instead: it needs no tokenizer.)
 */
export const randomWeightsFlag = Flags.boolean({
  description: 'ignore the checkpoint: seeded random weights from config.json, made on the device (for speed and memory at real sizes)',
});

/**
 * `--allow-nonfinite` of every command that loads a model's weights: weights holding NaN or Inf are refused by
 * default, naming the tensor (loadModel's allowNonFinite); this loads them anyway, for a checkpoint whose bad values
 * sit where no input reaches them. Non-finite logits or K/V are refused either way.
 */
export const allowNonFiniteFlag = Flags.boolean({
  description: 'load weights that hold NaN or Inf (refused by default, naming the tensor); non-finite logits or K/V still fail',
});

/** `--seed`: every command's default is the same (DEFAULT_SEED, 42). */
export function seedFlag(what: string) {
  return integerFlag({ description: `seed of ${what} (every command defaults to ${DEFAULT_SEED})`, default: DEFAULT_SEED, min: 0 });
}

/** `--bits`: CommVQ bit widths as a comma list (1, 2 or 1,2), parsed by parseBitsList (list-flags.ts) in every command. */
export function bitsFlag(o: { description: string; hidden?: boolean } & ({ default: string } | { required: true })): Interfaces.OptionFlag<string> {
  return Flags.string({ ...o, description: `${o.description}: 1, 2 or 1,2` }) as Interfaces.OptionFlag<string>;
}

/** `--cache` of the commands that run one cache (generate, eval *): the grammar of cache-flag.ts. */
export const cacheFlag = Flags.string({ description: CACHE_FLAG_HELP, default: 'dense' });
