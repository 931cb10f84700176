/**
 * Needle placement (§8.3 step 2, with §10.1 item 6 fixed): the context is the first L − 200 − |needle| haystack
 * tokens; the needle goes at floor(|context| · d/100), moved back until the token before it ends a sentence, where
 * "ends a sentence" is decided from the model's own tokenizer (the reference used Llama-2's period ids with every
 * model). d = 100 appends the needle. Everything stays token ids: no decode/re-encode, no BOS inside the context.
 *
 *   const periods = detectPeriodIds(tok, hay.ids);
 *   const placed = insertNeedle({ haystack: hay.ids, needle: tok.encode(NIAH_NEEDLE, { addSpecialTokens: false }), contextLength: 33_000, depthPercent: 56, periodIds: periods });
 */
import { CommvqError } from '../../errors.js';
import type { EvalTokenizer } from '../tokenizer.js';

export const NIAH_NEEDLE = '\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n';
export const NIAH_QUESTION = 'What is the best thing to do in San Francisco?';
export const NIAH_SYSTEM_PROMPT = 'You are a helpful AI bot that answers questions for a user. Keep your response short and direct';
export const NIAH_INSTRUCTION = "Don't give information outside the document or repeat your findings. The document definitely contains the answer, and I'm 100% sure. So try your best to find it.";
/** final_context_length_buffer: tokens left for the system prompt, the question and the answer */
export const NIAH_CONTEXT_BUFFER = 200;
/** Llama-2's "." ids, which the reference applies to every model (its default --model_provider LLaMA) */
export const LLAMA2_PERIOD_IDS: readonly number[] = [29889, 869];

/**
 * The ids among `candidates` (typically the haystack's) whose text, whitespace removed, is ".": "." itself and
 * merged forms like ".\n" or " .". The ids of `encode(".")` are always tried.
 */
export function detectPeriodIds(tok: EvalTokenizer, candidates: Iterable<number>): Set<number> {
  const periods = new Set<number>();
  const seen = new Set<number>();
  const consider = (id: number) => {
    if (seen.has(id)) return;
    seen.add(id);
    if (tok.decode([id], { skipSpecialTokens: false }).replace(/\s/g, '') === '.') periods.add(id);
  };
  for (const id of tok.encode('.', { addSpecialTokens: false })) consider(id);
  for (const id of candidates) consider(id);
  return periods;
}

export interface NeedlePlacement {
  /** haystack prefix with the needle inside: L − 200 tokens */
  ids: number[];
  /** index in `ids` where the needle starts */
  insertionPoint: number;
  /** haystack tokens around the needle */
  haystackTokens: number;
  /** where the depth pointed before moving back to a sentence end */
  targetPoint: number;
}

export interface InsertNeedleInput {
  haystack: readonly number[];
  needle: readonly number[];
  contextLength: number;
  depthPercent: number;
  periodIds: ReadonlySet<number>;
  buffer?: number;
}

export function insertNeedle(input: InsertNeedleInput): NeedlePlacement {
  const { haystack, needle, contextLength, depthPercent, periodIds } = input;
  const buffer = input.buffer ?? NIAH_CONTEXT_BUFFER;
  const n = contextLength - buffer - needle.length;
  if (n <= 0) throw new CommvqError(`NIAH length ${contextLength}: leaves no room for the haystack (${buffer} buffer + ${needle.length} needle tokens)`);
  if (haystack.length < n) throw new CommvqError(`NIAH length ${contextLength}: the haystack has ${haystack.length} tokens, ${n} are needed`);
  if (!(depthPercent >= 0 && depthPercent <= 100)) throw new CommvqError(`NIAH depth ${depthPercent}%: must be within 0..100`);
  const ctx = haystack.slice(0, n);
  if (depthPercent === 100) return { ids: [...ctx, ...needle], insertionPoint: n, haystackTokens: n, targetPoint: n };
  // int(len(tokens_context) * (depth_percent / 100)), with the same float rounding
  const target = Math.trunc(n * (depthPercent / 100));
  let ip = target;
  while (ip > 0 && !periodIds.has(ctx[ip - 1])) ip--;
  return { ids: [...ctx.slice(0, ip), ...needle, ...ctx.slice(ip)], insertionPoint: ip, haystackTokens: n, targetPoint: target };
}

/**
 * The reference's context string, bit for bit (for replication from code; `eval niah` has no flag for it): decode
 * the first L haystack tokens (BOS included, special tokens kept), re-encode context and needle *with* BOS, trim to
 * L − 200, snap back to the given period ids (Llama-2's by default) and decode again keeping special tokens — so the
 * text carries literal BOS strings, one of them inside the needle.
 */
export function referenceNeedleContext(
  tok: EvalTokenizer,
  haystackWithBos: readonly number[],
  contextLength: number,
  depthPercent: number,
  options: { needle?: string; periodIds?: readonly number[]; buffer?: number } = {},
): string {
  const periods = new Set(options.periodIds ?? LLAMA2_PERIOD_IDS);
  const context = tok.decode(haystackWithBos.slice(0, contextLength), { skipSpecialTokens: false });
  const tokensNeedle = tok.encode(options.needle ?? NIAH_NEEDLE);
  let tokensContext = tok.encode(context);
  const budget = contextLength - (options.buffer ?? NIAH_CONTEXT_BUFFER);
  if (tokensContext.length + tokensNeedle.length > budget) tokensContext = tokensContext.slice(0, budget - tokensNeedle.length);
  let out: number[];
  if (depthPercent === 100) out = [...tokensContext, ...tokensNeedle];
  else {
    let ip = Math.trunc(tokensContext.length * (depthPercent / 100));
    while (ip > 0 && !periods.has(tokensContext[ip - 1])) ip--;
    out = [...tokensContext.slice(0, ip), ...tokensNeedle, ...tokensContext.slice(ip)];
  }
  return tok.decode(out, { skipSpecialTokens: false });
}

/**
 * Several needles in one context (RULER's variants): the context is the first L − 200 − Σ|needle| haystack tokens;
 * needle i goes at floor(n · d_i/100), moved back to a sentence end as insertNeedle does, all points taken in the
 * haystack's coordinates (so no needle splits another); needles at one point keep their order. The placement of
 * needle 0 is reported. One needle gives exactly insertNeedle's result.
 *
 *   insertNeedles({ haystack, needles: [{ ids: a, depth: 50 }, { ids: b, depth: 12.5 }], contextLength: 4000, periodIds })
 */
export function insertNeedles(input: Omit<InsertNeedleInput, 'needle' | 'depthPercent'> & { needles: readonly { ids: readonly number[]; depth: number }[] }): NeedlePlacement {
  const { haystack, needles, contextLength, periodIds } = input;
  if (needles.length === 1) return insertNeedle({ ...input, needle: needles[0]!.ids, depthPercent: needles[0]!.depth });
  const buffer = input.buffer ?? NIAH_CONTEXT_BUFFER;
  const needleTokens = needles.reduce((a, x) => a + x.ids.length, 0);
  const n = contextLength - buffer - needleTokens;
  if (n <= 0) throw new CommvqError(`NIAH length ${contextLength}: leaves no room for the haystack (${buffer} buffer + ${needleTokens} needle tokens)`);
  if (haystack.length < n) throw new CommvqError(`NIAH length ${contextLength}: the haystack has ${haystack.length} tokens, ${n} are needed`);
  const ctx = haystack.slice(0, n);
  const points = needles.map((x, i) => {
    if (!(x.depth >= 0 && x.depth <= 100)) throw new CommvqError(`NIAH depth ${x.depth}%: must be within 0..100`);
    const target = x.depth === 100 ? n : Math.trunc(n * (x.depth / 100));
    let ip = target;
    if (x.depth !== 100) while (ip > 0 && !periodIds.has(ctx[ip - 1]!)) ip--;
    return { i, ip, target };
  });
  const order = [...points].sort((a, b) => a.ip - b.ip || a.i - b.i);
  const ids: number[] = [];
  let at = 0;
  let insertionPoint = 0;
  for (const p of order) {
    ids.push(...ctx.slice(at, p.ip));
    at = p.ip;
    if (p.i === 0) insertionPoint = ids.length;
    ids.push(...needles[p.i]!.ids);
  }
  ids.push(...ctx.slice(at));
  return { ids, insertionPoint, haystackTokens: n, targetPoint: points[0]!.target };
}
