/**
 * The one kind of numeric flag every command uses: oclif reads the text, parseNumberOption (core/options) checks it
 * (a plain finite number, whole where `integer`, inside `min`/`max`/`above`), and a bad value becomes an OptionError
 * under this flag's name — printed as one line, `--lr abc: not a number`, exit 1, before the command does anything.
 *
 *   lr: numberFlag({ description: 'peak learning rate', default: 1e-3, above: 0, max: 1 })
 *   steps: integerFlag({ description: 'training steps', default: 1000, min: 1 })
 */
import { Flags, type Interfaces } from '@oclif/core';
import { parseNumberOption, type NumberRule } from '../core/options/number-option.js';

type NumberFlagOptions = NumberRule & { description: string; hidden?: boolean };

/** A number flag; with `default` its value is always set, without one it may be undefined. */
export function numberFlag(o: NumberFlagOptions & { default: number }): Interfaces.OptionFlag<number>;
export function numberFlag(o: NumberFlagOptions & { default?: undefined }): Interfaces.OptionFlag<number | undefined>;
export function numberFlag(o: NumberFlagOptions & { default?: number }): Interfaces.OptionFlag<number | undefined> {
  const { integer, min, max, above, ...flag } = o;
  const rule: NumberRule = { integer, min, max, above };
  return Flags.custom<number>({
    ...flag,
    helpValue: integer ? '<integer>' : '<number>',
    parse: async (input, _ctx, opts) => parseNumberOption(camelCase(opts.name), input, rule),
  })() as Interfaces.OptionFlag<number | undefined>;
}

/** A whole-number flag (counts, steps, tokens): numberFlag with `integer`. */
export function integerFlag(o: Omit<NumberFlagOptions, 'integer'> & { default: number }): Interfaces.OptionFlag<number>;
export function integerFlag(o: Omit<NumberFlagOptions, 'integer'> & { default?: undefined }): Interfaces.OptionFlag<number | undefined>;
export function integerFlag(o: Omit<NumberFlagOptions, 'integer'> & { default?: number }): Interfaces.OptionFlag<number | undefined> {
  return numberFlag({ ...o, integer: true } as NumberFlagOptions & { default: number });
}

/** `seq-len` → `seqLen`: the core's name for the option (option-flags.ts maps it back to the flag). */
function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
