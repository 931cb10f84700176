/**
 * LongBench pred.py per example (§8.1): format the template with the example's fields, middle-truncate on token
 * ids, (no) chat template, the generation settings (samsum stops at a newline), and the post-processing of the
 * decoded prediction.
 *
 *   const p = buildLongbenchPrompt(tok, longbenchTask('qasper'), example, { maxPromptTokens: 127_500 });
 *   const gen = longbenchGeneration(task, { modelEosTokenIds: [128001, 128008, 128009], tokenizerEosTokenId: 128009, newlineTokenId: 198 });
 *   const pred = longbenchPostprocess(tok.decode(newIds));
 */
import { CommvqError, OptionError } from '../../errors.js';
import { pyFormat } from '../format.js';
import { pyStrip } from '../py.js';
import { withLeadingSpecialIds, type ChatTokenizer, type EvalTokenizer } from '../tokenizer.js';
import { longbenchTruncate } from '../truncate.js';
import type { LongBenchExample } from './data.js';
import type { LongBenchTask } from './tasks.js';

/**
 * 'none' is the reference (its build_chat returns the prompt unchanged); 'template' applies the model's chat
 * template except on the tasks LongBench keeps raw (trec, triviaqa, samsum, lsht, lcc, repobench-p).
 */
export type LongBenchChatMode = 'none' | 'template';

export interface LongBenchPromptOptions {
  /** 127,500 in the reference; see promptTokenBudget for small models */
  maxPromptTokens: number;
  chat?: LongBenchChatMode;
}

export interface LongBenchPrompt {
  ids: number[];
  text: string;
  truncated: boolean;
  originalTokens: number;
  chatTemplate: boolean;
}

/** The template filled with the example's fields (`prompt_format.format(**json_obj)`). */
export function formatLongbenchPrompt(task: LongBenchTask, example: LongBenchExample): string {
  return pyFormat(task.prompt, {
    input: example.input,
    context: example.context,
    length: example.length,
    dataset: example.dataset ?? task.name,
    language: example.language ?? null,
    _id: example.id,
  });
}

/** Steps 1–3 of §8.1: format, truncate in the middle, then the chat template if asked for and allowed. */
export function buildLongbenchPrompt(tok: EvalTokenizer | ChatTokenizer, task: LongBenchTask, example: LongBenchExample, options: LongBenchPromptOptions): LongBenchPrompt {
  const t = longbenchTruncate(tok, formatLongbenchPrompt(task, example), options.maxPromptTokens);
  if ((options.chat ?? 'none') === 'none' || task.skipChatTemplate) {
    return { ids: t.ids, text: t.text, truncated: t.truncated, originalTokens: t.originalTokens, chatTemplate: false };
  }
  const chat = tok as ChatTokenizer;
  if (!chat.hasChatTemplate) throw new OptionError('chat', 'template', 'the tokenizer has no chat template');
  const rendered = chat.applyChatTemplate([{ role: 'user', content: t.text }], { addGenerationPrompt: true });
  return { ids: withLeadingSpecialIds(tok, tok.encode(rendered, { addSpecialTokens: false })), text: rendered, truncated: t.truncated, originalTokens: t.originalTokens, chatTemplate: true };
}

export interface LongBenchGeneration {
  maxNewTokens: number;
  /** generation stops at any of these */
  eosTokenIds: number[];
  /** samsum's `min_length = prompt_len + 1`: EOS cannot end the answer before one token */
  minNewTokens: number;
}

/**
 * Generation settings: greedy, max new tokens from the table; samsum passes `eos_token_id = [tokenizer.eos_token_id,
 * id of "\n"]`, which replaces the model's generation-config list, and min_length = prompt + 1.
 */
export function longbenchGeneration(
  task: LongBenchTask,
  ids: { modelEosTokenIds: readonly number[]; tokenizerEosTokenId?: number; newlineTokenId?: number },
): LongBenchGeneration {
  if (!task.stopAtNewline) return { maxNewTokens: task.maxNewTokens, eosTokenIds: [...ids.modelEosTokenIds], minNewTokens: 0 };
  if (ids.tokenizerEosTokenId === undefined || ids.newlineTokenId === undefined) {
    throw new CommvqError(`${task.name}: the newline stop needs the tokenizer's eos token id and the id of "\\n"`);
  }
  return { maxNewTokens: task.maxNewTokens, eosTokenIds: [ids.tokenizerEosTokenId, ids.newlineTokenId], minNewTokens: 1 };
}

/** `tokenizer.encode("\n", add_special_tokens=False)[-1]`: the token samsum and NIAH stop at. */
export function newlineTokenId(tok: EvalTokenizer): number {
  const ids = tok.encode('\n', { addSpecialTokens: false });
  if (ids.length === 0) throw new CommvqError('the tokenizer encodes "\\n" to nothing');
  return ids[ids.length - 1];
}

/**
 * post_process: cut at the first "\n\nQuestion", then at "</s>", strip (model names without "llama2"); for
 * "llama2" names also at "(Document", "\n\nAnswer" and "(Passage".
 */
export function longbenchPostprocess(response: string, options: { llama2?: boolean } = {}): string {
  if (options.llama2) {
    return pyStrip(response.split('(Document')[0].split('\n\nQuestion')[0].split('\n\nAnswer')[0].split('(Passage')[0]);
  }
  return pyStrip(response.split('\n\nQuestion')[0].split('</s>')[0]);
}
