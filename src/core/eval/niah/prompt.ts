/**
 * The NIAH prompt (§8.3 step 3): system prompt, the context as one user message, the question as another, an empty
 * assistant turn, the generation prompt — through the model's chat template. Fixed here: the context goes in as
 * the token ids placed by insertNeedle (a sentinel in the rendered template marks the spot), so it is never
 * re-tokenized and no special-token text inside it can turn into ids, and the prompt starts with exactly one BOS.
 * Models without a chat template get a plain-text prompt.
 *
 *   const ids = niahPromptIds(tok, placement.ids).ids;
 */
import { CommvqError } from '../../errors.js';
import type { ChatMessage } from '../../tokenizer/text-tokenizer.js';
import { withLeadingSpecialIds, type ChatTokenizer, type EvalTokenizer } from '../tokenizer.js';
import { NIAH_INSTRUCTION, NIAH_QUESTION, NIAH_SYSTEM_PROMPT } from './needle.js';

const SENTINEL = '\u0000NIAH_CONTEXT\u0000';

export const NIAH_MAX_NEW_TOKENS = 40;

export interface NiahPromptOptions {
  question?: string;
  system?: string;
  instruction?: string;
}

export interface NiahPrompt {
  ids: number[];
  template: 'chat' | 'plain';
}

/** The reference's messages; `context` is the user message that carries the haystack. */
export function niahMessages(context: string, options: NiahPromptOptions = {}): ChatMessage[] {
  return [
    { role: 'system', content: options.system ?? NIAH_SYSTEM_PROMPT },
    { role: 'user', content: context },
    { role: 'user', content: `${options.question ?? NIAH_QUESTION} ${options.instruction ?? NIAH_INSTRUCTION}` },
    { role: 'assistant', content: '' },
  ];
}

/** Prompt ids around the context ids; exactly one BOS (the tokenizer's), none inside. */
export function niahPromptIds(tok: EvalTokenizer | ChatTokenizer, contextIds: readonly number[], options: NiahPromptOptions = {}): NiahPrompt {
  const chat = tok as Partial<ChatTokenizer>;
  let before: string;
  let after: string;
  let template: NiahPrompt['template'];
  if (chat.hasChatTemplate && chat.applyChatTemplate) {
    const rendered = chat.applyChatTemplate(niahMessages(SENTINEL, options), { addGenerationPrompt: true });
    const parts = rendered.split(SENTINEL);
    if (parts.length !== 2) throw new CommvqError('NIAH: the chat template does not render the context message exactly once');
    [before, after] = parts;
    template = 'chat';
  } else {
    // no chat template: the reference's plain fallback, without its literal "<|im_start|>"
    before = 'This is a very long story book: <book> ';
    after = ` </book>.\n Based on the content of the book, Question: ${options.question ?? NIAH_QUESTION}\nAnswer:`;
    template = 'plain';
  }
  const head = withLeadingSpecialIds(tok, tok.encode(before, { addSpecialTokens: false }));
  return { ids: [...head, ...contextIds, ...tok.encode(after, { addSpecialTokens: false })], template };
}

/** Greedy, 40 new tokens, stopping at the tokenizer's EOS or a newline (`eos_token_id=[eos, id of "\n"]`). */
export function niahGeneration(ids: { tokenizerEosTokenId: number; newlineTokenId: number }): { maxNewTokens: number; eosTokenIds: number[] } {
  return { maxNewTokens: NIAH_MAX_NEW_TOKENS, eosTokenIds: [ids.tokenizerEosTokenId, ids.newlineTokenId] };
}

/**
 * The reference's prompt ids (for replication from code, beside referenceNeedleContext): the chat template rendered
 * around the context *text*, then tokenized with special tokens added — a second BOS, and literal BOS strings in the
 * context become BOS ids.
 */
export function referenceNiahPromptIds(tok: ChatTokenizer, contextText: string, options: NiahPromptOptions = {}): number[] {
  if (!tok.hasChatTemplate) throw new CommvqError('NIAH reference-compat: the tokenizer has no chat template');
  return tok.encode(tok.applyChatTemplate(niahMessages(contextText, options), { addGenerationPrompt: true }));
}
