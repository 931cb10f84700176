/**
 * Needles that vary per cell, and RULER's variants (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your
 * Long-Context Language Models?"). A needle template holds at most one value placeholder and optionally `{key}`:
 *
 *   {digits:N}   N random digits (the first not 0): "The pass key is {digits:7}."
 *   {words:N}    N random words joined by '-' (from a list that shares no word with the filler)
 *   {key}        a random two-word key, so several needles can be told apart: "One of the special magic numbers
 *                for {key} is: {digits:7}." (RULER's needle); the question's `{key}` becomes the keys asked
 *
 * RULER's variants, as counts: `keys` needles of distinct keys (multi-key: the ones not asked are distractors),
 * `values` needles per key (multi-value: every value is expected), `queries` keys asked (multi-query). Each cell draws
 * its values from SeededRandom(hash(seed, cell id)), so a cell's needles are the same in every run, shard and --limit.
 * The first asked needle goes at the cell's depth, every other at a seeded random depth. Scoring (score.ts) is
 * RULER's recall of the expected values with `contains`.
 *
 *   const g = NeedleGenerator.create({ needle: 'The pass key is {digits:7}.', question: 'What is the pass key?', seed: 42 });
 *   g.cell('len_1000_depth_50')   // { needles: [{ text: 'The pass key is 4830127.', depth: null }], answers: ['4830127'], question: 'What is the pass key?' }
 */
import { createHash } from 'node:crypto';
import { OptionError } from '../../errors.js';
import { SeededRandom } from '../../model/seeded-random.js';

/** RULER's needle and question (its niah_multikey/multivalue/multiquery tasks, numbers as values). */
export const RULER_NEEDLE = 'One of the special magic numbers for {key} is: {digits:7}.';
export const RULER_QUESTION = 'What are all the special magic numbers for {key} mentioned in the provided text?';

/** Key and value words: concrete nouns none of which the generated filler uses (tested). */
export const NEEDLE_WORDS: readonly string[] = [
  'apricot', 'basalt', 'cobalt', 'dolphin', 'ember', 'falcon', 'glacier', 'hazel', 'iris', 'jasper', 'kestrel', 'lantern',
  'meadow', 'nectar', 'onyx', 'pepper', 'quartz', 'raven', 'saffron', 'tundra', 'umber', 'velvet', 'willow', 'yarrow',
  'zephyr', 'amber', 'birch', 'cedar', 'dune', 'elm', 'fjord', 'garnet', 'heron', 'indigo', 'juniper', 'kiwi', 'lotus',
  'maple', 'nutmeg', 'olive', 'pebble', 'quill', 'reef', 'sage', 'thistle', 'urchin', 'violet', 'walnut', 'xenon', 'yucca',
  'zinc', 'acorn', 'bison', 'coral', 'daisy', 'egret', 'fern', 'gecko', 'hornet', 'ivory', 'jackal', 'koala', 'lemur', 'marble',
];

export interface NeedleGeneratorOptions {
  /** the needle sentence, with placeholders or without (a fixed needle) */
  needle: string;
  question: string;
  seed: number;
  /** needles of distinct keys (default 1) */
  keys?: number;
  /** needles per key (default 1) */
  values?: number;
  /** keys asked (default 1) */
  queries?: number;
}

export interface CellNeedle {
  text: string;
  /** the depth percent of a needle other than the first asked one; null for it (the cell's depth) */
  depth: number | null;
}

export interface CellNeedles {
  needles: CellNeedle[];
  /** the values the answer must hold (the needle itself for a fixed one) */
  answers: string[];
  /** the asked needles' sentences: what exact and rouge1 compare with */
  asked: string[];
  question: string;
}

type Value = { kind: 'digits' | 'words'; count: number };

const PLACEHOLDER = /\{(digits|words):(\d+)\}/g;

export class NeedleGenerator {
  private constructor(
    readonly options: Required<NeedleGeneratorOptions>,
    private readonly value: Value | undefined,
    private readonly keyed: boolean,
  ) {}

  /** Checks the template and counts; one-line errors on `needle`, `keys`, `values`, `queries`. */
  static create(o: NeedleGeneratorOptions): NeedleGenerator {
    const opts = { ...o, keys: o.keys ?? 1, values: o.values ?? 1, queries: o.queries ?? 1 };
    const values = [...o.needle.matchAll(PLACEHOLDER)];
    if (values.length > 1) throw new OptionError('needle', o.needle, 'holds more than one value placeholder ({digits:N} or {words:N})');
    const leftover = o.needle.replace(PLACEHOLDER, '').replaceAll('{key}', '').match(/\{[^}]*\}/);
    if (leftover) throw new OptionError('needle', o.needle, `unknown placeholder ${leftover[0]}`, 'placeholders: {digits:N}, {words:N}, {key}');
    const value = values[0] && { kind: values[0][1] as Value['kind'], count: Number(values[0][2]) };
    if (value && (value.count < 1 || value.count > 64)) throw new OptionError('needle', o.needle, `{${value.kind}:${value.count}}: N must be within 1..64`);
    for (const name of ['keys', 'values', 'queries'] as const) {
      if (!Number.isInteger(opts[name]) || opts[name] < 1) throw new OptionError(name, String(opts[name]), 'must be a whole number of at least 1');
    }
    const keyed = o.needle.includes('{key}');
    if (!keyed && (opts.keys > 1 || opts.queries > 1)) throw new OptionError('keys', String(opts.keys), 'several keys need {key} in the needle', `e.g. --needle "${RULER_NEEDLE}"`);
    if (opts.queries > opts.keys) throw new OptionError('queries', String(opts.queries), `asks more keys than the ${opts.keys} needle key(s)`);
    if (opts.values > 1 && !value) throw new OptionError('values', String(opts.values), 'several values need a value placeholder in the needle');
    return new NeedleGenerator(opts, value, keyed);
  }

  /** Whether needles vary per cell (a fixed needle's manifest records no generator, as before). */
  get varies(): boolean {
    return this.value !== undefined || this.keyed;
  }

  /** What the manifest records: the template, counts and seed. */
  describe(): Record<string, unknown> {
    const { keys, values, queries, seed } = this.options;
    return { keys, values, queries, seed };
  }

  /** The needles, answers and question of one cell. */
  cell(cellId: string): CellNeedles {
    const { needle, question, keys, values, queries } = this.options;
    if (!this.varies) return { needles: [{ text: needle, depth: null }], answers: [needle.trim()], asked: [needle], question };
    const rng = new SeededRandom(cellSeed(this.options.seed, cellId));
    const keyNames = distinct(keys, () => `${pick(rng)}-${pick(rng)}`);
    const needles: CellNeedle[] = [];
    const answers: string[] = [];
    const asked: string[] = [];
    keyNames.forEach((key, k) => {
      const vals = distinct(values, () => this.draw(rng));
      vals.forEach((v, j) => {
        const text = needle.replaceAll('{key}', key).replace(PLACEHOLDER, v);
        const first = k === 0 && j === 0;
        needles.push({ text, depth: first ? null : Math.round(rng.uniform() * 1000) / 10 });
        if (k < queries) {
          if (this.value) answers.push(v);
          asked.push(text);
        }
      });
      if (!this.value && k < queries) answers.push(key); // a keyed needle without a value: the key is what is recalled
    });
    const askedKeys = keyNames.slice(0, queries);
    const q = question.replaceAll('{key}', askedKeys.length === 1 ? askedKeys[0]! : `${askedKeys.slice(0, -1).join(', ')} and ${askedKeys.at(-1)}`);
    return { needles, answers, asked, question: q };
  }

  private draw(rng: SeededRandom): string {
    const { kind, count } = this.value!;
    if (kind === 'words') return Array.from({ length: count }, () => pick(rng)).join('-');
    return Array.from({ length: count }, (_, i) => String(i === 0 ? 1 + Math.floor(rng.uniform() * 9) : Math.floor(rng.uniform() * 10))).join('');
  }
}

function pick(rng: SeededRandom): string {
  return NEEDLE_WORDS[Math.floor(rng.uniform() * NEEDLE_WORDS.length)]!;
}

/** `n` distinct draws (the key space is large: 4096 pairs, 9·10^(N−1) numbers). */
function distinct(n: number, draw: () => string): string[] {
  const out = new Set<string>();
  for (let tries = 0; out.size < n; tries++) {
    if (tries > 1000 * n) throw new OptionError('needle', undefined, `cannot draw ${n} distinct values: make the placeholder longer`);
    out.add(draw());
  }
  return [...out];
}

/** A cell's seed: 32 bits of SHA-256 of the run's seed and the cell id. */
function cellSeed(seed: number, cellId: string): number {
  return createHash('sha256').update(`${seed}/${cellId}`).digest().readUInt32LE(0);
}
