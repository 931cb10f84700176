import { Flags } from '@oclif/core';
import { CACHE_FLAG_HELP } from './cache-flag.js';
import { allowNonFiniteFlag, deviceFlag, dtypeFlag, randomWeightsFlag } from './flags.js';
import { integerFlag } from './number-flag.js';

/** The flags every `commvq eval` run shares: model (or its random stand-in), run folder, cache (or a list to compare), sharding, limit, device. */
export const evalRunFlags = {
  model: Flags.string({ description: 'Hugging Face model folder', required: true }),
  'random-weights': randomWeightsFlag,
  'allow-nonfinite': allowNonFiniteFlag,
  out: Flags.string({ description: 'run folder to write (a rerun continues it)', required: true }),
  cache: Flags.string({
    description: `${CACHE_FLAG_HELP}. Several caches, as a comma list (dense,kivi:bits=2,commvq:bits=2,run=RUN_DIR: a token with = is an option of the cache before it), run one after the other, each in OUT/<name> (dense, kivi-bits2, commvq-bits2, ...; resumable on its own, a finished one skipped on a rerun), and are compared in OUT/comparison.json (NIAH: with the heatmaps side by side in OUT/comparison.svg and .png)`,
    default: 'dense',
  }),
  shard: Flags.string({ description: 'run shard i of n (0-based), e.g. 0/2; merge the shards with eval merge', default: '0/1' }),
  device: deviceFlag,
  dtype: dtypeFlag,
};

/** The truncation cap of the dataset benchmarks (LongBench, InfiniteBench). */
export const maxPromptTokensFlag = integerFlag({ description: 'truncation cap (default 127,500, lowered to what the model’s context leaves)', min: 2 });

export const exampleLimitFlag = integerFlag({ description: 'run only the first N examples of each task', min: 1 });
