import type { ChatMessage } from '../tokenizer/text-tokenizer.js';

/**
 * What the evaluation protocols need of a tokenizer; `TextTokenizer` satisfies it. `encode` adds the special
 * tokens of the tokenizer's post-processor (BOS for Llama) unless told not to; `decode` skips special tokens unless
 * told not to — the defaults of Hugging Face's `tokenizer(text)` and `tokenizer.decode(ids, skip_special_tokens=True)`.
 */
export interface EvalTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

/** A tokenizer that may render a chat template (NIAH's prompt uses one when the model has it). */
export interface ChatTokenizer extends EvalTokenizer {
  readonly hasChatTemplate: boolean;
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}

/**
 * The ids a tokenizer's post-processor puts before the text (Llama: [BOS]; none for a tokenizer without one),
 * found by encoding "a" with and without special tokens.
 */
export function leadingSpecialIds(tok: EvalTokenizer): number[] {
  const withSpecial = tok.encode('a', { addSpecialTokens: true });
  const plain = tok.encode('a', { addSpecialTokens: false });
  for (let start = 0; start + plain.length <= withSpecial.length; start++) {
    if (plain.every((id, i) => withSpecial[start + i] === id)) return withSpecial.slice(0, start);
  }
  return [];
}

/**
 * `ids` starting with the tokenizer's leading special ids exactly once: kept as they are when a rendered chat
 * template already put BOS there, prefixed when it did not.
 *
 *   withLeadingSpecialIds(tok, tok.encode(rendered, { addSpecialTokens: false }))
 */
export function withLeadingSpecialIds(tok: EvalTokenizer, ids: readonly number[]): number[] {
  const lead = leadingSpecialIds(tok);
  const has = lead.length > 0 && lead.every((id, i) => ids[i] === id);
  return has ? [...ids] : [...lead, ...ids];
}
