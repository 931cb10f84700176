/**
 * Middle truncation of a prompt on token ids, the two ways the reference harnesses do it (§8.1, §8.2). Both
 * tokenize with BOS, keep floor(max/2) tokens from each end, decode each part skipping special tokens, and
 * tokenize the result again with BOS, so the final length can differ slightly from `maxLength`.
 *
 *   longbenchTruncate(tok, prompt, 127_500)     // text unchanged when it fits
 *   infinitebenchTruncate(tok, prompt, 127_500) // always decoded and re-encoded, as the reference does
 */
import { CommvqError } from '../errors.js';
import type { EvalTokenizer } from './tokenizer.js';

/** The reference's cap for any local model (`model2maxlen["llama"]`, InfiniteBench's TRUNCATE_LEN). */
export const REFERENCE_MAX_PROMPT_TOKENS = 127_500;

export interface TruncatedPrompt {
  /** the prompt text after truncation (what a chat template, if any, is applied to) */
  text: string;
  /** `encode(text)` with BOS: what the model reads when no chat template is applied */
  ids: number[];
  truncated: boolean;
  /** tokens of the untruncated prompt, BOS included */
  originalTokens: number;
}

function checkMax(maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new CommvqError(`prompt length limit ${maxLength}: must be an integer of at least 2`);
}

/**
 * LongBench pred.py: if the prompt is longer than maxLength tokens, prompt = decode(ids[:half]) + decode(ids[-half:])
 * (strings joined), half = floor(maxLength/2); otherwise the text is kept as it is.
 */
export function longbenchTruncate(tok: EvalTokenizer, prompt: string, maxLength: number): TruncatedPrompt {
  checkMax(maxLength);
  const ids = tok.encode(prompt);
  if (ids.length <= maxLength) return { text: prompt, ids, truncated: false, originalTokens: ids.length };
  const half = Math.floor(maxLength / 2);
  const text = tok.decode(ids.slice(0, half), { skipSpecialTokens: true }) + tok.decode(ids.slice(-half), { skipSpecialTokens: true });
  return { text, ids: tok.encode(text), truncated: true, originalTokens: ids.length };
}

/**
 * InfiniteBench truncate_by_tokens: ids[:split] + ids[-split:] when too long, split = maxLength // 2, then *always*
 * decode (skipping special tokens) and re-encode — the text a model reads has been through one tokenizer round
 * trip even when nothing was cut.
 */
export function infinitebenchTruncate(tok: EvalTokenizer, prompt: string, maxLength: number): TruncatedPrompt {
  checkMax(maxLength);
  const ids = tok.encode(prompt);
  const split = Math.floor(maxLength / 2);
  const kept = ids.length <= maxLength ? ids : [...ids.slice(0, split), ...ids.slice(-split)];
  const text = tok.decode(kept, { skipSpecialTokens: true });
  return { text, ids: tok.encode(text), truncated: kept !== ids, originalTokens: ids.length };
}

/**
 * The prompt budget: the reference's 127,500, or less where the model's context must also hold the generated
 * tokens (a small model's 8K context).
 *
 *   promptTokenBudget(131072, 512)  // 127500      promptTokenBudget(8192, 128)  // 8064
 */
export function promptTokenBudget(contextLength: number, maxNewTokens: number, cap = REFERENCE_MAX_PROMPT_TOKENS): number {
  const budget = Math.min(cap, contextLength - maxNewTokens);
  if (budget < 2) throw new CommvqError(`a context of ${contextLength} tokens leaves no room for a prompt and ${maxNewTokens} new tokens`);
  return budget;
}
