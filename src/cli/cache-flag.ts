/**
 * The `--cache` grammar, the same in every command (generate, eval *, measure-memory):
 *
 *   CACHE   := KIND[:OPTION=VALUE[,OPTION=VALUE...]]
 *   CACHES  := CACHE[,CACHE...]     a token with `=` is an option of the cache before it; one without starts a new cache
 *
 * KIND and OPTION are CacheSpec's names (src/core/cache-spec.ts): `dense`, `dense:chunk=4096`,
 * `commvq:bits=1,run=runs/a`, `commvq:key=K.arrow,value=V.arrow,prefill=strict,encoding=gumbel,seed=7,chunk=4096`,
 * `commvq:bits=1,run=runs/a,compress=keys` (values exact: an ablation), `kivi:bits=2,group=32,residual=128`, `int4`,
 * `int2:group=32,residual=64`, `fp8`, and for measure-memory `dense,commvq:bits=1,commvq:bits=2`. A wrong value is an
 * OptionError on `cache` that quotes the whole flag value.
 *
 *   parseCacheFlag('commvq:bits=2,run=runs/a')   // { kind: 'commvq', bits: 2, run: 'runs/a' }
 */
import { CACHE_KINDS, CACHE_OPTIONS, cacheNumberProblem, checkCacheSpec, type CacheKind, type CacheSpec } from '../core/cache-spec.js';
import type { Bits } from '../core/commvq/geometry.js';
import { OptionError } from '../core/errors.js';
import { decimalValue } from '../core/options/number-option.js';

/** The help text of `--cache`, shared by the commands that take one cache. */
export const CACHE_FLAG_HELP =
  'KV cache: KIND[:OPTION=VALUE,...]. dense[:chunk=N] (exact); commvq:bits=1|2,run=RUN_DIR (the codebooks train-key and ' +
  'train-value wrote there) or commvq:key=KEY.arrow,value=VALUE.arrow, then [,prefill=faithful|strict] (default faithful) ' +
  '[,encoding=argmax|gumbel] (default argmax) [,seed=N] (gumbel’s, default 42) [,chunk=N] (prompt tokens per forward; ' +
  'commvq needs prefill=strict for it) [,compress=keys|values|both] (the halves in codes, default both; keys or values ' +
  'alone keeps the other exact, an ablation, CPU only for now); with --random-weights, commvq:bits=1|2 alone means random codebooks; ' +
  'kivi:bits=2|1[,group=32][,residual=128] (KIVI; residual a multiple of group); ' +
  'int4|int2[:group=32|64][,residual=N] (HF QuantizedCache: per-token groups, default 64; decode tokens kept exact until ' +
  'N, default 128, then quantized at once); fp8 (e4m3, a scale per token and head)';

/** The help text of measure-memory's `--cache`: a list of the same grammar, without the options that command fixes (encoding, seed, chunk). */
export const CACHE_LIST_HELP =
  'caches to compare, a comma list of the --cache grammar (a token with = is an option of the cache before it): dense, ' +
  'commvq:bits=1|2,run=RUN_DIR or commvq:key=KEY.arrow,value=VALUE.arrow; with --random-weights, commvq:bits=1|2 alone ' +
  'means random codebooks; each commvq takes [,prefill=faithful|strict] (default faithful; both modes of one width are two ' +
  'caches); kivi:bits=2|1[,group=32][,residual=128], int4|int2[:group=32|64][,residual=128] and fp8 as in --cache. ' +
  'E.g. dense,commvq:bits=1,commvq:bits=1,prefill=strict,kivi:bits=2,int4,fp8. Every prompt runs as generate runs it: layer by layer, in row chunks of 4096 tokens (1024 above 64K)';

/** The one cache of a `--cache` value; a list is refused (this command runs one cache). */
export function parseCacheFlag(text: string): CacheSpec {
  const specs = parseCacheList(text);
  if (specs.length !== 1) throw new OptionError('cache', text, `one cache, not ${specs.length}: this command runs one`);
  return specs[0]!;
}

/** Every cache of a `--cache` list, each checked (checkCacheSpec). */
export function parseCacheList(text: string): CacheSpec[] {
  try {
    const specs = splitCaches(text).map(({ kind, options }) => toSpec(kind, options));
    specs.forEach(checkCacheSpec);
    return specs;
  } catch (err) {
    if (err instanceof OptionError) throw new OptionError('cache', text, err.problem, err.hint);
    throw err;
  }
}

/**
 * measure-memory's `--bits` (kept for its older command lines): a `commvq` without codebook files or bits becomes one
 * `commvq:bits=N` per width, in place.
 *
 *   withBits(parseCacheList('dense,commvq'), [1, 2])   // dense, commvq:bits=1, commvq:bits=2
 */
export function withBits(specs: readonly CacheSpec[], bits: readonly Bits[]): CacheSpec[] {
  return specs.flatMap((s) => (s.kind === 'commvq' && s.bits === undefined && s.key === undefined ? bits.map((b) => ({ ...s, bits: b })) : [s]));
}

type RawCache = { kind: string; options: Map<string, string> };

/** Tokens split on commas: one without `=` starts a cache (`KIND` or `KIND:OPTION=VALUE`), one with `=` adds an option. */
function splitCaches(text: string): RawCache[] {
  const caches: RawCache[] = [];
  for (const token of text.split(',').map((t) => t.trim())) {
    const colon = token.indexOf(':');
    const startsCache = colon >= 0 ? !token.slice(0, colon).includes('=') : !token.includes('=');
    if (startsCache) {
      caches.push({ kind: colon >= 0 ? token.slice(0, colon) : token, options: new Map() });
      if (colon >= 0) addOption(caches.at(-1)!, token.slice(colon + 1));
    } else if (caches.length === 0) {
      throw new OptionError('cache', undefined, `'${token}' comes before any cache kind (${CACHE_KINDS.join(', ')})`);
    } else {
      addOption(caches.at(-1)!, token);
    }
  }
  return caches;
}

function addOption(cache: RawCache, token: string): void {
  const eq = token.indexOf('=');
  const name = token.slice(0, eq);
  if (eq <= 0) throw new OptionError('cache', undefined, `'${token}' is not OPTION=VALUE`);
  if (eq === token.length - 1) throw new OptionError('cache', undefined, `${name}= has no value`);
  if (cache.options.has(name)) throw new OptionError('cache', undefined, `${name}= is given twice`);
  cache.options.set(name, token.slice(eq + 1));
}

/** One cache's kind and options as a CacheSpec: each option known to its kind and of its type. */
function toSpec(kind: string, options: Map<string, string>): CacheSpec {
  if (!(CACHE_KINDS as readonly string[]).includes(kind)) {
    throw new OptionError('cache', undefined, `unknown cache kind '${kind}'`, `kinds: ${CACHE_KINDS.join(', ')}`);
  }
  const allowed = CACHE_OPTIONS[kind as CacheKind] as readonly string[];
  const spec: Record<string, unknown> = { kind };
  for (const [name, value] of options) {
    if (!allowed.includes(name)) throw new OptionError('cache', undefined, `${kind} takes no option '${name}' (${allowed.length ? `it takes ${allowed.join(', ')}` : 'it takes none'})`);
    spec[name] = optionValue(name, value);
  }
  return spec as unknown as CacheSpec;
}

function optionValue(name: string, value: string): unknown {
  switch (name) {
    case 'prefill':
      return oneOf(name, value, ['faithful', 'strict']);
    case 'encoding':
      return oneOf(name, value, ['argmax', 'gumbel']);
    case 'compress':
      return oneOf(name, value, ['keys', 'values', 'both']);
    case 'bits': // a whole number here; the widths each kind takes are checkCacheSpec's (one rule for every kind)
    case 'seed':
    case 'chunk':
    case 'group':
    case 'residual':
      return cacheNumber(name, value);
    default:
      return value; // key, value, run: paths
  }
}

/** A numeric option's text through the one number rule (number-option.ts): `chunk=0: must be at least 1`. */
function cacheNumber(name: 'bits' | 'seed' | 'chunk' | 'group' | 'residual', text: string): number {
  const value = decimalValue(text);
  const problem = cacheNumberProblem(name, value, text);
  if (problem) throw new OptionError('cache', undefined, problem);
  return value;
}

function oneOf(name: string, value: string, choices: readonly string[]): string {
  if (!choices.includes(value)) throw new OptionError('cache', undefined, `${name} is ${choices.join(' or ')}, not ${value}`);
  return value;
}
