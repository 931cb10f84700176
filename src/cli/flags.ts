import { Flags } from '@oclif/core';

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
