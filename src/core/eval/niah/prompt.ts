/**
 * The NIAH prompt (§8.3 step 3), by default (template `auto`): system prompt, the context as one user message, the question as another, an empty
 * assistant turn, the generation prompt — through the model's chat template. Fixed here: the context goes in as
 * the token ids placed by insertNeedle (a sentinel in the rendered template marks the spot), so it is never
 * re-tokenized and no special-token text inside it can turn into ids, and the prompt starts with exactly one BOS.
 * Models without a chat template get a plain-text prompt. A template may be asked for (`--template`): `chat` (refused
 * without one), `plain`, `raw` (BOS, the context, then the question's tokens, no wrapper: what a base model trained to
 * complete "The pass key is" after a text needs), or a custom text placing `{context}` and `{question}` anywhere
 * (`{{`/`}}` are literal braces). Every template's prompt starts with exactly one BOS (the tokenizer's, if any).
 *
 *   const ids = niahPromptIds(tok, placement.ids).ids;
 *   niahPromptIds(tok, placement.ids, { template: parseNiahTemplate('{context}\nQ: {question}\nA:'), question }).ids;
 */
import { CommvqError, OptionError } from '../../errors.js';
import { pyFormat } from '../format.js';
import type { ChatMessage } from '../../tokenizer/text-tokenizer.js';
import { leadingSpecialIds, withLeadingSpecialIds, type ChatTokenizer, type EvalTokenizer } from '../tokenizer.js';
import { NIAH_INSTRUCTION, NIAH_QUESTION, NIAH_SYSTEM_PROMPT } from './needle.js';

const SENTINEL = '\u0000NIAH_CONTEXT\u0000';

export const NIAH_MAX_NEW_TOKENS = 40;

/** auto: chat if the tokenizer has a template, else plain (the harness's behaviour before --template). */
export type NiahTemplate = 'auto' | 'chat' | 'plain' | 'raw' | { custom: string };

export interface NiahPromptOptions {
  template?: NiahTemplate;
  question?: string;
  system?: string;
  instruction?: string;
}

export interface NiahPrompt {
  ids: number[];
  /** the template used (auto resolved) */
  template: 'chat' | 'plain' | 'raw' | 'custom';
}

/**
 * `--template`: chat, plain, raw, auto, or a custom text holding `{context}` once (and `{question}` at most once).
 *
 *   parseNiahTemplate('raw')                                   // 'raw'
 *   parseNiahTemplate('Text: {context}\nQuestion: {question}')  // { custom: 'Text: {context}\nQuestion: {question}' }
 */
export function parseNiahTemplate(text: string): NiahTemplate {
  if (text === 'auto' || text === 'chat' || text === 'plain' || text === 'raw') return text;
  if (!text.includes('{context}')) throw new OptionError('template', text, 'is chat, plain, raw, or a text holding {context} (and {question})');
  try {
    const parts = pyFormat(text, { context: SENTINEL, question: '' }).split(SENTINEL);
    if (parts.length !== 2) throw new OptionError('template', text, '{context} must appear exactly once');
  } catch (err) {
    if (err instanceof OptionError) throw err;
    throw new OptionError('template', text, (err as Error).message.replace(/^prompt template: the example has no field/, 'no placeholder'), 'placeholders: {context}, {question}; {{ and }} are literal braces');
  }
  return { custom: text };
}

/** What the manifest records of a template: its name, or the custom text. */
export function niahTemplateName(t: NiahTemplate): string {
  return typeof t === 'string' ? t : t.custom;
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
  const asked = options.template ?? 'auto';
  const question = options.question ?? NIAH_QUESTION;
  let before: string;
  let after: string;
  let template: NiahPrompt['template'];
  const hasChat = Boolean(chat.hasChatTemplate && chat.applyChatTemplate);
  if (asked === 'chat' && !hasChat) throw new OptionError('template', 'chat', 'the tokenizer has no chat template', 'use plain, raw or a custom template for a base model');
  if (asked === 'raw') {
    return { ids: [...leadingSpecialIds(tok), ...contextIds, ...tok.encode(question, { addSpecialTokens: false })], template: 'raw' };
  } else if (typeof asked === 'object') {
    [before, after] = pyFormat(asked.custom, { context: SENTINEL, question }).split(SENTINEL) as [string, string];
    template = 'custom';
  } else if (hasChat && asked !== 'plain') {
    const rendered = chat.applyChatTemplate!(niahMessages(SENTINEL, options), { addGenerationPrompt: true });
    const parts = rendered.split(SENTINEL);
    if (parts.length !== 2) throw new CommvqError('NIAH: the chat template does not render the context message exactly once');
    [before, after] = parts;
    template = 'chat';
  } else {
    // no chat template: the reference's plain fallback, without its literal "<|im_start|>"
    before = 'This is a very long story book: <book> ';
    after = ` </book>.\n Based on the content of the book, Question: ${question}\nAnswer:`;
    template = 'plain';
  }
  const head = withLeadingSpecialIds(tok, tok.encode(before, { addSpecialTokens: false }));
  return { ids: [...head, ...contextIds, ...tok.encode(after, { addSpecialTokens: false })], template };
}

/** RULER's tokens_to_generate for its needle tasks: room for several values, which may come one per line. */
export const RULER_MAX_NEW_TOKENS = 128;

/**
 * Greedy, 40 new tokens, stopping at the tokenizer's EOS or a newline (`eos_token_id=[eos, id of "\n"]`). With
 * several values expected (RULER's multi-value and multi-query), RULER's 128 tokens and no stop at a newline.
 */
export function niahGeneration(ids: { tokenizerEosTokenId: number; newlineTokenId: number }, o: { severalValues?: boolean } = {}): { maxNewTokens: number; eosTokenIds: number[] } {
  if (o.severalValues) return { maxNewTokens: RULER_MAX_NEW_TOKENS, eosTokenIds: [ids.tokenizerEosTokenId] };
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
