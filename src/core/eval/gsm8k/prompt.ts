/**
 * The GSM8K prompt of our protocol, in two templates:
 * - `fewshot` (base models): BOS, then "Q: {question}\nA: {rationale}\n\n" for each CoT exemplar, then
 *   "Q: {question}\nA:" (lm-evaluation-harness's gsm8k-cot layout);
 * - `chat` (instruct models): the exemplars as user/assistant turns ("Q: {question}" / rationale) before the
 *   question's user turn, through the model's chat template with the generation prompt.
 * Generation is greedy. A few-shot answer ends at its blank line (the exemplars' separator): generation stops at EOS
 * or a token holding a blank line, and the text is cut at the first blank line or "Q:" (the next exemplar the model
 * starts to write is not its answer). A chat answer ends with its turn (EOS) and may hold blank lines: it is kept
 * whole, with twice the room (512 tokens).
 *
 *   const ids = gsm8kPromptIds(tok, 'Janet has 3 apples...', { template: 'fewshot', shots: 8 });
 */
import { OptionError } from '../../errors.js';
import type { ChatMessage } from '../../tokenizer/text-tokenizer.js';
import { withLeadingSpecialIds, type ChatTokenizer, type EvalTokenizer } from '../tokenizer.js';
import { GSM8K_COT_EXEMPLARS } from './exemplars.js';

export type Gsm8kTemplate = 'fewshot' | 'chat';

export const GSM8K_TEMPLATES: readonly Gsm8kTemplate[] = ['fewshot', 'chat'];

/** The longest answer by default: lm-evaluation-harness's gsm8k-cot 256 for few-shot, twice that for a chat answer's longer prose. */
export function gsm8kMaxNewTokens(template: Gsm8kTemplate): number {
  return template === 'chat' ? 512 : 256;
}

export interface Gsm8kPromptOptions {
  template: Gsm8kTemplate;
  /** exemplars before the question, 0..8 (default 8) */
  shots?: number;
}

/** The few-shot text (without BOS) of `shots` exemplars and the question. */
export function gsm8kFewshotText(question: string, shots = GSM8K_COT_EXEMPLARS.length): string {
  const examples = GSM8K_COT_EXEMPLARS.slice(0, checkShots(shots)).map((e) => `Q: ${e.question}\nA: ${e.answer}\n\n`);
  return `${examples.join('')}Q: ${question}\nA:`;
}

/** The chat turns: each exemplar as a user question and an assistant rationale, then the question. */
export function gsm8kMessages(question: string, shots = GSM8K_COT_EXEMPLARS.length): ChatMessage[] {
  const turns = GSM8K_COT_EXEMPLARS.slice(0, checkShots(shots)).flatMap((e): ChatMessage[] => [
    { role: 'user', content: `Q: ${e.question}` },
    { role: 'assistant', content: e.answer },
  ]);
  return [...turns, { role: 'user', content: `Q: ${question}` }];
}

/** Prompt ids with exactly one BOS (the tokenizer's, where it has one). */
export function gsm8kPromptIds(tok: EvalTokenizer | ChatTokenizer, question: string, o: Gsm8kPromptOptions): number[] {
  if (o.template === 'fewshot') return withLeadingSpecialIds(tok, tok.encode(gsm8kFewshotText(question, o.shots), { addSpecialTokens: false }));
  const chat = tok as Partial<ChatTokenizer>;
  if (!chat.hasChatTemplate || !chat.applyChatTemplate) throw new OptionError('template', 'chat', 'the tokenizer has no chat template', 'use the fewshot template for a base model');
  return withLeadingSpecialIds(tok, tok.encode(chat.applyChatTemplate(gsm8kMessages(question, o.shots), { addGenerationPrompt: true }), { addSpecialTokens: false }));
}

/** The answer text: a few-shot one up to the first blank line or "Q:" that starts another question; a chat one whole. */
export function gsm8kCutAnswer(text: string, template: Gsm8kTemplate = 'fewshot'): string {
  if (template === 'chat') return text.trim();
  const cut = text.search(/\n\s*\n|(?:^|\n)\s*Q:/);
  return (cut < 0 ? text : text.slice(0, cut)).trim();
}

/**
 * Ids of the tokens whose text holds a blank line ("\n\n", and merged forms such as ".\n\n" in Llama-3's vocabulary):
 * the few-shot template's stop ids beside EOS. Reads each id of the vocabulary once.
 */
export function blankLineTokenIds(tok: EvalTokenizer, vocabSize: number): number[] {
  const ids: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (tok.decode([id], { skipSpecialTokens: true }).includes('\n\n')) ids.push(id);
  return ids;
}

function checkShots(shots: number): number {
  if (!Number.isInteger(shots) || shots < 0 || shots > GSM8K_COT_EXEMPLARS.length) {
    throw new OptionError('shots', String(shots), `must be a whole number within 0..${GSM8K_COT_EXEMPLARS.length} (the CoT exemplars)`);
  }
  return shots;
}
