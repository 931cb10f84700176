/**
 * The NIAH haystack as token ids (§8.3 with the fixes of §10.1 item 6): the generated filler by default, or a
 * folder of .txt files concatenated in sorted name order (the reference used glob order, which differs between
 * file systems), repeated whole until long enough. Encoded without special tokens, and any special token the text
 * spells out literally (a file containing "<|begin_of_text|>") is removed, so the haystack holds none.
 *
 *   const hay = buildHaystack(tok, { kind: 'filler', seed: 1 }, 33_000);  // hay.ids.length ≥ 33000
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../../errors.js';
import type { EvalTokenizer } from '../tokenizer.js';
import { fillerText, NIAH_FILLER_SEED } from './filler.js';

export type HaystackSource = { kind: 'filler'; seed?: number } | { kind: 'folder'; dir: string };

export interface Haystack {
  /** at least the requested number of tokens, no special tokens */
  ids: number[];
  /** what the haystack was made of, for the run manifest */
  description: string;
  /** the files read, in order (folder source) */
  files: string[];
  /** special tokens spelled out in the text and removed */
  specialTokensRemoved: number;
}

/** The sorted .txt files of a folder; none is an error. */
export function haystackFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CommvqError(`${dir}: haystack folder not found`);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => join(dir, f));
  if (files.length === 0) throw new CommvqError(`${dir}: no .txt files in the haystack folder`);
  return files;
}

/** Builds a haystack of at least `minTokens` tokens. */
export function buildHaystack(tok: EvalTokenizer, source: HaystackSource, minTokens: number): Haystack {
  if (source.kind === 'filler') {
    const seed = source.seed ?? NIAH_FILLER_SEED;
    let chars = Math.max(1024, minTokens * 5);
    for (;;) {
      const { ids, removed } = withoutSpecialTokens(tok, tok.encode(fillerText(seed, chars), { addSpecialTokens: false }));
      if (ids.length >= minTokens) return { ids, description: `generated filler text, seed ${seed}`, files: [], specialTokensRemoved: removed };
      chars *= 2;
    }
  }
  const files = haystackFiles(source.dir);
  const onePass = files.map((f) => readFileSync(f, 'utf8')).join('');
  const passTokens = withoutSpecialTokens(tok, tok.encode(onePass, { addSpecialTokens: false })).ids.length;
  if (passTokens === 0) throw new CommvqError(`${source.dir}: the haystack files hold no text`);
  for (let passes = Math.max(1, Math.ceil(minTokens / passTokens)); ; passes++) {
    const { ids, removed } = withoutSpecialTokens(tok, tok.encode(onePass.repeat(passes), { addSpecialTokens: false }));
    if (ids.length >= minTokens) {
      return { ids, description: `${files.length} .txt files of ${source.dir} in sorted order, ${passes} pass(es)`, files, specialTokensRemoved: removed };
    }
  }
}

/**
 * Drops special tokens (those `decode(..., skipSpecialTokens)` hides) from a haystack: literal special-token
 * strings in the text would otherwise become BOS/EOS ids in the middle of the context.
 */
export function withoutSpecialTokens(tok: EvalTokenizer, ids: readonly number[]): { ids: number[]; removed: number } {
  const special = new Map<number, boolean>();
  const isSpecial = (id: number) => {
    let s = special.get(id);
    if (s === undefined) {
      s = tok.decode([id], { skipSpecialTokens: true }) === '' && tok.decode([id], { skipSpecialTokens: false }) !== '';
      special.set(id, s);
    }
    return s;
  };
  const kept = ids.filter((id) => !isSpecial(id));
  return { ids: kept, removed: ids.length - kept.length };
}
