/**
 * Which KV cache a run uses: one type for every caller (generate, the eval runners, measure-memory, the pipeline).
 * The command line writes it as `--cache KIND[:option=value,...]` (src/cli/cache-flag.ts); each field below is one
 * option of that grammar, under the same name. Options left out take COMMVQ_DEFAULTS. `resolveCacheSpec` checks a
 * spec and finds its codebook files; cache-factory.ts turns it into caches.
 *
 *   const spec: CacheSpec = { kind: 'commvq', bits: 1, run: 'runs/a', prefill: 'strict', chunk: 4096 };
 *   resolveCacheSpec(spec)   // { kind: 'commvq', bits: 1, key: 'runs/a/key-codebook-em-1bit.arrow', value: 'runs/a/value-codebook-1bit.arrow', ... }
 */
import type { CompressTarget, PrefillMode } from './commvq/commvq-cache.js';
import { BITS_PROBLEM, type Bits } from './commvq/geometry.js';
import { findRunCodebooks, requireCodebookFiles } from './commvq/load-commvq.js';
import { OptionError } from './errors.js';
import { numberProblem, type NumberRule } from './options/number-option.js';
import { DEFAULT_SEED } from './model/seeded-random.js';
import type { KiviBits } from './peers/kivi-rows.js';

/** Value codes at inference: argmax (deterministic, our default) or the reference's seeded Gumbel sampling (§10.1 item 2). */
export type ValueEncoding = 'argmax' | 'gumbel';

/** The exact cache: keys and values as the model computes them. */
export interface DenseCacheSpec {
  readonly kind: 'dense';
  /** prompt tokens per forward (default: the whole prompt in one), which bounds the prompt's activations */
  readonly chunk?: number;
}

/** CommVQ codes (1–2 bits per value) from trained codebooks: `key` and `value` files, or `run` and `bits`. */
export interface CommvqCacheSpec {
  readonly kind: 'commvq';
  /** key codebook file (commvq train-key); goes with `value` */
  readonly key?: string;
  /** value codebook file (commvq train-value); goes with `key` */
  readonly value?: string;
  /** a run folder holding the codebooks of `bits`: key-codebook-{em|e2e}-{bits}bit.arrow (em first), value-codebook-{bits}bit.arrow */
  readonly run?: string;
  /** the bit width: which codebooks of `run` to use; with `key` and `value`, what the files must hold */
  readonly bits?: Bits;
  /** the prompt's own attention: faithful (exact, the reference) or strict (on codes, as decoding sees it) */
  readonly prefill?: PrefillMode;
  readonly encoding?: ValueEncoding;
  /** the seed of gumbel encoding */
  readonly seed?: number;
  /** prompt tokens per forward; needs prefill strict (faithful attends exactly over the whole prompt at once) */
  readonly chunk?: number;
  /** the halves in codes: both (CommVQ), or keys or values alone with the other exact (ablations; CPU only so far) */
  readonly compress?: CompressTarget;
}

/** KIVI (Liu et al., ICML 2024): 2 or 1 bits, keys per channel and values per token in groups, recent tokens exact (peers/kivi-cache.ts). */
export interface KiviCacheSpec {
  readonly kind: 'kivi';
  /** code bits: 2 or 1 (KIVI-2, KIVI-1); required */
  readonly bits?: KiviBits;
  /** G: tokens per key group, channels per value group (default 32, the paper's) */
  readonly group?: number;
  /** R: keys flush R tokens at once, values keep the last R exact; a multiple of group (default 128, the paper's) */
  readonly residual?: number;
}

/** The options of HF QuantizedCache's integer caches (peers/int-cache.ts); unset ones take INT_DEFAULTS. */
interface IntCacheOptions {
  /** channels per affine group of one token: 32 or 64 (HF's q_group_size) */
  readonly group?: number;
  /** decode tokens held exact until a flush quantizes them all (HF's residual_length) */
  readonly residual?: number;
}

/** 4-bit per-token asymmetric groups, the most recent decode tokens exact (HF QuantizedCache, nbits=4). */
export interface Int4CacheSpec extends IntCacheOptions {
  readonly kind: 'int4';
}

/** 2-bit per-token asymmetric groups, the most recent decode tokens exact (HF QuantizedCache, nbits=2). */
export interface Int2CacheSpec extends IntCacheOptions {
  readonly kind: 'int2';
}

export type IntCacheSpec = Int4CacheSpec | Int2CacheSpec;

/** FP8 e4m3 keys and values, one f32 scale per token and head (peers/fp8-cache.ts). */
export interface Fp8CacheSpec {
  readonly kind: 'fp8';
}

export type CacheSpec = DenseCacheSpec | CommvqCacheSpec | KiviCacheSpec | IntCacheSpec | Fp8CacheSpec;
export type CacheKind = CacheSpec['kind'];

export const CACHE_KINDS: readonly CacheKind[] = ['dense', 'commvq', 'kivi', 'int4', 'int2', 'fp8'];

/** The options each kind takes, in the order help text lists them. */
export const CACHE_OPTIONS: { readonly [K in CacheKind]: readonly (keyof Extract<CacheSpec, { kind: K }> & string)[] } = {
  dense: ['chunk'],
  commvq: ['key', 'value', 'run', 'bits', 'prefill', 'encoding', 'seed', 'chunk', 'compress'],
  kivi: ['bits', 'group', 'residual'],
  int4: ['group', 'residual'],
  int2: ['group', 'residual'],
  fp8: [],
};

/** What a KIVI spec's unset options mean: the paper's group and residual. */
export const KIVI_DEFAULTS: { readonly group: number; readonly residual: number } = { group: 32, residual: 128 };

/** What an int4/int2 spec's unset options mean: HF QuantizedCacheConfig's q_group_size and residual_length. */
export const INT_DEFAULTS: { readonly group: number; readonly residual: number } = { group: 64, residual: 128 };

/** The group sizes of the HF QuantizedCache family (a group must divide D_h, so it never straddles two heads). */
export const INT_GROUPS: readonly number[] = [32, 64];

/** What a CommVQ spec's unset options mean. */
export const COMMVQ_DEFAULTS: { readonly prefill: PrefillMode; readonly encoding: ValueEncoding; readonly seed: number; readonly compress: CompressTarget } = {
  prefill: 'faithful',
  encoding: 'argmax',
  seed: DEFAULT_SEED,
  compress: 'both',
};

/** The numeric options' rules (number-option.ts), for the `--cache` parser and checkCacheSpec alike. */
export const CACHE_NUMBER_RULES: { readonly bits: NumberRule; readonly seed: NumberRule; readonly chunk: NumberRule; readonly group: NumberRule; readonly residual: NumberRule } = {
  bits: { integer: true, min: 1 }, // code bits; which widths a kind takes is checkCacheSpec's rule (CommVQ 1|2, KIVI 2|1)
  seed: { integer: true, min: 0 },
  chunk: { integer: true, min: 1 }, // prompt tokens per forward
  group: { integer: true, min: 1 }, // KIVI's G; channels per int4/int2 group (INT_GROUPS then names the sizes taken)
  residual: { integer: true, min: 0 }, // exact tokens: int4/int2 decode tokens (0 quantizes every token at once); KIVI's R, a positive multiple of group (checkKiviSpec)
};

/** What is wrong with a numeric option's value (written `text` in a --cache flag), as `chunk=0: must be at least 1`, or undefined. */
export function cacheNumberProblem(name: keyof typeof CACHE_NUMBER_RULES, value: number, text = String(value)): string | undefined {
  const problem = numberProblem(value, CACHE_NUMBER_RULES[name]);
  return problem && `${name}=${text}: ${problem}`;
}

/**
 * Refuses a spec whose options do not go together, as an OptionError on `cache` (the command line adds the
 * `--cache` value it came from).
 *
 *   checkCacheSpec({ kind: 'commvq', key: 'k.arrow' })   // throws: cache: key= and value= go together
 */
export function checkCacheSpec(spec: CacheSpec): void {
  const fail = (problem: string, hint?: string): never => {
    throw new OptionError('cache', undefined, problem, hint);
  };
  for (const name of ['bits', 'chunk', 'seed', 'group', 'residual'] as const) {
    const value = (spec as { bits?: number; chunk?: number; seed?: number; group?: number; residual?: number })[name];
    const problem = value === undefined ? undefined : cacheNumberProblem(name, value);
    if (problem) fail(problem);
  }
  if (spec.kind === 'kivi') return checkKiviSpec(spec, fail);
  if (spec.kind === 'commvq' && spec.bits !== undefined && spec.bits !== 1 && spec.bits !== 2) fail(BITS_PROBLEM);
  if ((spec.kind === 'int4' || spec.kind === 'int2') && spec.group !== undefined && !INT_GROUPS.includes(spec.group)) {
    fail(`group=${spec.group}: groups are ${INT_GROUPS.join(' or ')} channels`);
  }
  if (spec.kind !== 'commvq') return;
  if ((spec.key === undefined) !== (spec.value === undefined)) fail('key= and value= go together');
  if (spec.key !== undefined && spec.run !== undefined) fail('give the codebooks as key= and value=, or as run= and bits=, not both');
  if (spec.run !== undefined && spec.bits === undefined) fail('run= needs bits=1 or bits=2: which codebooks of the run');
  if (spec.chunk !== undefined && (spec.prefill ?? COMMVQ_DEFAULTS.prefill) === 'faithful') {
    fail('chunk needs prefill=strict', 'faithful prefill attends exactly over the whole prompt, in one forward');
  }
}

/** KIVI's options: bits given, numbers whole, residual a multiple of group (KIVI flushes keys in whole groups). */
function checkKiviSpec(spec: KiviCacheSpec, fail: (problem: string, hint?: string) => never): void {
  const { group, residual } = { ...KIVI_DEFAULTS, ...definedOnly(spec) };
  for (const [name, value] of [['group', group], ['residual', residual]] as const) {
    const problem = cacheNumberProblem(name, value);
    if (problem) fail(problem);
  }
  if (residual === 0) fail('residual=0: KIVI keeps its newest tokens exact in at least one group', 'e.g. group=32,residual=128');
  if (residual % group !== 0) fail(`residual=${residual} is not a multiple of group=${group}`, 'KIVI quantizes keys R tokens at a time in whole groups of G: e.g. group=32,residual=128');
  if (spec.bits === undefined) fail('kivi needs bits=2 or bits=1');
  if (spec.bits !== 1 && spec.bits !== 2) fail(`bits=${spec.bits}: KIVI's bit widths are 2 and 1`);
}

/** The options that are set (an explicit undefined must not hide a default). */
function definedOnly<S extends object>(spec: S): Partial<S> {
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) as Partial<S>;
}

/**
 * A checked spec with its codebook files found and present: `run` and `bits` become `key` and `value`. Without
 * codebooks a CommVQ spec is refused, unless `random` allows random codebooks of its `bits` (measure-memory with
 * random weights).
 *
 *   resolveCacheSpec({ kind: 'commvq', bits: 2, run: 'runs/a' })   // key and value of runs/a, 2 bits
 */
export function resolveCacheSpec<S extends CacheSpec>(spec: S, o: { random?: boolean } = {}): S {
  checkCacheSpec(spec);
  if (spec.kind !== 'commvq') return spec; // nothing to find: dense and the peer caches need no files
  const { run, ...rest } = spec as CommvqCacheSpec;
  if (run !== undefined) return { ...rest, ...findRunCodebooks(run, spec.bits!) } as S;
  if (spec.key !== undefined) {
    requireCodebookFiles(spec.key, spec.value!);
    return spec;
  }
  if (o.random && spec.bits !== undefined) return spec;
  throw new OptionError('cache', undefined, 'commvq needs codebooks: key= and value=, or run= and bits=', 'train them with commvq train-key and commvq train-value');
}

/**
 * A spec written back in the `--cache` grammar, options in CACHE_OPTIONS order: what a comparison records for each
 * of its caches (parsing the text gives the spec again).
 *
 *   cacheSpecText({ kind: 'commvq', run: 'runs/a', bits: 2 })   // 'commvq:run=runs/a,bits=2'
 *   cacheSpecText({ kind: 'int4' })                            // 'int4'
 */
export function cacheSpecText(spec: CacheSpec): string {
  const options = specOptions(spec).map(([name, value]) => `${name}=${value}`);
  return options.length === 0 ? spec.kind : `${spec.kind}:${options.join(',')}`;
}

/**
 * A short folder name for a spec, for a comparison's run of it: the kind, then each option but the paths (run, key,
 * value), numbers glued to their name, words after a dash. Two specs may share a name (they differ in paths only):
 * the comparison makes those unique.
 *
 *   cacheFolderName({ kind: 'kivi', bits: 2 })                                        // 'kivi-bits2'
 *   cacheFolderName({ kind: 'commvq', run: 'runs/a', bits: 1, prefill: 'strict' })    // 'commvq-bits1-prefill-strict'
 */
export function cacheFolderName(spec: CacheSpec): string {
  const parts = specOptions(spec)
    .filter(([name]) => !PATH_OPTIONS.includes(name))
    .map(([name, value]) => (typeof value === 'number' ? `${name}${value}` : `${name}-${value}`));
  return [spec.kind, ...parts].join('-');
}

const PATH_OPTIONS: readonly string[] = ['run', 'key', 'value'];

/** The options set in a spec, in CACHE_OPTIONS order. */
function specOptions(spec: CacheSpec): [string, string | number][] {
  const set = spec as unknown as Record<string, string | number | undefined>;
  return (CACHE_OPTIONS[spec.kind] as readonly string[]).flatMap((name) => (set[name] === undefined ? [] : [[name, set[name]!] as [string, string | number]]));
}
