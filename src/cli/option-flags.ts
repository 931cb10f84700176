/**
 * The core names options (OptionError.option: `bits`, `seqLen`, `dataDir`), the command line names flags: this maps
 * one to the other when a command prints a wrong option value. A command's own table comes first, then the
 * options every command spells alike, then the option's kebab-case name when the command has that flag; an option
 * the command has no flag for keeps its core name (library settings such as pipeline's `window`).
 *
 *   optionErrorLine(new OptionError('seqLen', '0', 'must be positive'), { 'seq-len': {} }, [])   // '--seq-len 0: must be positive'
 */
import type { OptionError } from '../core/errors.js';

/** Core options whose flag is not their kebab-case name, alike in every command. */
const SHARED_FLAGS: Readonly<Record<string, string>> = {
  modelDir: '--model',
  dataDir: '--data',
  corpus: '--data',
  deviceBytes: '--device-memory',
};

/** The flag for `option`: the command's table, the shared one, or `--kebab-case` where the command defines it. */
export function flagFor(option: string, flags: Readonly<Record<string, unknown>>, own: Readonly<Record<string, string>> = {}): string {
  const mapped = own[option] ?? SHARED_FLAGS[option];
  if (mapped) return mapped;
  const kebab = option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  return kebab in flags ? `--${kebab}` : option;
}

/**
 * The one line a command prints for a wrong option value: `--flag VALUE: problem`. Where the core gave no value,
 * the value the user typed for that flag (from `argv`) is shown.
 */
export function optionErrorLine(err: OptionError, flags: Readonly<Record<string, unknown>>, argv: readonly string[], own?: Readonly<Record<string, string>>): string {
  const flag = flagFor(err.option, flags, own);
  const value = err.value ?? givenValue(argv, flag);
  return `${flag}${value === undefined ? '' : ` ${value}`}: ${err.problem}`;
}

/** What `argv` gives `flag` (`--flag V` or `--flag=V`), if it is there. */
function givenValue(argv: readonly string[], flag: string): string | undefined {
  for (const [i, a] of argv.entries()) {
    if (a === flag) return argv[i + 1];
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  }
  return undefined;
}
