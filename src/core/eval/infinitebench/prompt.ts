/**
 * InfiniteBench per example (§8.2): the prompt from the intended llama template (or, for bit-exact replication, the
 * reference code's context-only prompt), middle truncation at 127,500 tokens with the reference's unconditional
 * decode/re-encode, no chat template, and the ground truth the reference writes beside each prediction.
 *
 *   const p = buildInfinitebenchPrompt(tok, infinitebenchTask('passkey'), example, { maxPromptTokens: 127_500 });
 */
import { CommvqError } from '../../errors.js';
import { pyFormat } from '../format.js';
import type { EvalTokenizer } from '../tokenizer.js';
import { infinitebenchTruncate } from '../truncate.js';
import type { InfiniteBenchAnswer, InfiniteBenchExample } from './data.js';
import type { InfiniteBenchTask } from './tasks.js';

/** 'intended' (default): the llama templates; 'reference-literal': only the context, as eval_commvq.py runs. */
export type InfiniteBenchPromptMode = 'intended' | 'reference-literal';

const OPTION_LETTERS = 'ABCD';

/** The template's fields for one example; a field the task needs and the example lacks is an error. */
export function infinitebenchFields(task: InfiniteBenchTask, example: InfiniteBenchExample): Record<string, string> {
  const fields: Record<string, string> = { context: example.context, input: example.input, question: example.input };
  if (task.name === 'longbook_choice_eng' || task.name === 'code_debug') {
    if (example.options.length < 4) throw new CommvqError(`${task.name} example ${example.id}: needs 4 options, has ${example.options.length}`);
    for (let i = 0; i < 4; i++) fields[`OPTION_${OPTION_LETTERS[i]}`] = example.options[i];
  }
  if (task.name === 'math_find') fields.prefix = mathFindPrefix(example);
  if (task.name === 'code_run') Object.assign(fields, codeRunCall(example));
  return fields;
}

/**
 * math_find's prefix: `What is {target} in the following list?`, target = the first match of `The .+ of` in the
 * input (greedy, within one line), lowercased, its last 3 characters (" of") removed.
 */
export function mathFindPrefix(example: InfiniteBenchExample): string {
  const m = /The [^\n]+ of/.exec(example.input);
  if (!m) throw new CommvqError(`math_find example ${example.id}: cannot find the target number ("The ... of") in the input`);
  return `What is ${m[0].toLowerCase().slice(0, -3)} in the following list?`;
}

/** code_run's function call: the first `func_N(±M)` in the input, and the function's name. */
export function codeRunCall(example: InfiniteBenchExample): { func: string; func_call: string } {
  const m = /func_[0-9]+\(-?[0-9]+\)/.exec(example.input);
  if (!m) throw new CommvqError(`code_run example ${example.id}: cannot find the function call ("func_N(M)") in the input`);
  return { func: m[0].split('(')[0], func_call: m[0] };
}

export function formatInfinitebenchPrompt(task: InfiniteBenchTask, example: InfiniteBenchExample, mode: InfiniteBenchPromptMode = 'intended'): string {
  return mode === 'reference-literal' ? example.context : pyFormat(task.template, infinitebenchFields(task, example));
}

export interface InfiniteBenchPrompt {
  ids: number[];
  text: string;
  truncated: boolean;
  originalTokens: number;
}

export function buildInfinitebenchPrompt(
  tok: EvalTokenizer,
  task: InfiniteBenchTask,
  example: InfiniteBenchExample,
  options: { maxPromptTokens: number; mode?: InfiniteBenchPromptMode },
): InfiniteBenchPrompt {
  return infinitebenchTruncate(tok, formatInfinitebenchPrompt(task, example, options.mode), options.maxPromptTokens);
}

/** Greedy with the task's max new tokens, stopping at the model's generation-config EOS ids (no newline stop). */
export function infinitebenchGeneration(task: InfiniteBenchTask, modelEosTokenIds: readonly number[]): { maxNewTokens: number; eosTokenIds: number[] } {
  return { maxNewTokens: task.maxNewTokens, eosTokenIds: [...modelEosTokenIds] };
}

/**
 * get_answer: the example's answer, except for code_debug and longbook_choice_eng, where it is
 * [answer_text, option_letter] with letter = "ABCD"[options.index(answer)] (an answer already given as
 * [text, letter] is kept).
 */
export function infinitebenchGroundTruth(task: InfiniteBenchTask, example: InfiniteBenchExample): InfiniteBenchAnswer {
  if (task.name !== 'code_debug' && task.name !== 'longbook_choice_eng') return example.answer;
  const a = example.answer;
  const withLetter = (text: string | number): [string, string] => {
    const i = example.options.indexOf(String(text));
    if (i < 0 || i >= 4) throw new CommvqError(`${task.name} example ${example.id}: the answer ${JSON.stringify(text)} is not among options A–D`);
    return [String(text), OPTION_LETTERS[i]];
  };
  if (!Array.isArray(a)) return withLetter(a);
  if (a.length === 1) return withLetter(a[0]);
  if (a.length === 2 && typeof a[1] === 'string' && OPTION_LETTERS.includes(a[1]) && a[1].length === 1) return [String(a[0]), a[1]];
  throw new CommvqError(`${task.name} example ${example.id}: cannot read the answer ${JSON.stringify(a)}`);
}
