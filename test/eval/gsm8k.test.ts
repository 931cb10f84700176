/**
 * GSM8K's protocol pieces without a model: the final number found in outputs as models write them (the exemplars'
 * format, the dataset's "####", chatty and wrong formats), the gold number, exact match by value, the answer cut
 * before the next question, and the prompt of each template as token ids.
 */
import { describe, expect, it } from 'vitest';
import { extractGsm8kAnswer, gsm8kCorrect, gsm8kGold, type Gsm8kRule } from '../../src/core/eval/gsm8k/answer.js';
import { GSM8K_COT_EXEMPLARS } from '../../src/core/eval/gsm8k/exemplars.js';
import { blankLineTokenIds, gsm8kCutAnswer, gsm8kFewshotText, gsm8kMaxNewTokens, gsm8kPromptIds } from '../../src/core/eval/gsm8k/prompt.js';
import type { ChatMessage } from '../../src/core/tokenizer/text-tokenizer.js';
import { BOS, CharTokenizer } from './char-tokenizer.js';

// [model output, number extracted, rule]
const OUTPUTS: [string, string | null, Gsm8kRule][] = [
  ['Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether. The answer is 72.', '72', 'answer-is'],
  ['Weng earns 12 / 60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10.\n#### 10', '10', 'hashes'],
  ['In total she pays 1,000 + 80 = $1,080. The answer is $1,080.', '1080', 'answer-is'],
  ['The answer is: 18 dollars', '18', 'answer-is'],
  ['So the final answer is **-3**.', '-3', 'answer-is'],
  ['She saves 12.5% of 40 = 5.00 dollars. The answer is 5.00.', '5.00', 'answer-is'],
  ['First 3 + 4 = 7. The answer is 7. Wait, I forgot the 2 extra, so the answer is 9.', '9', 'answer-is'],
  ['Answer: 42', '42', 'answer-is'],
  ['He has 3 boxes of 12 eggs, so 3 * 12 = 36 eggs in all.', '36', 'last-number'],
  ['It costs $.50 each', '0.50', 'last-number'],
  ['I cannot determine the answer from the information given.', null, 'none'],
  ['', null, 'none'],
];

describe('GSM8K answer extraction', () => {
  it.each(OUTPUTS)('%j → %s (%s)', (text, value, rule) => {
    expect(extractGsm8kAnswer(text)).toEqual({ value, rule });
  });

  it('gold numbers come from "#### N"; exact match compares values', () => {
    expect(gsm8kGold('Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18', 'test.jsonl:1')).toBe('18');
    expect(gsm8kGold('... #### 1,080', 'x')).toBe('1080');
    expect(() => gsm8kGold('no final line', 'test.jsonl:7')).toThrow(/^test\.jsonl:7: the answer has no '#### N' line$/);
    expect(gsm8kCorrect('5.00', '5')).toBe(true);
    expect(gsm8kCorrect('1080', '1080')).toBe(true);
    expect(gsm8kCorrect('-3', '3')).toBe(false);
    expect(gsm8kCorrect(null, '3')).toBe(false);
  });

  it('the eight exemplars are Wei et al.’s, each ending with its own answer', () => {
    expect(GSM8K_COT_EXEMPLARS).toHaveLength(8);
    expect(GSM8K_COT_EXEMPLARS.map((e) => extractGsm8kAnswer(e.answer).value)).toEqual(['6', '5', '39', '8', '9', '29', '33', '8']);
    expect(GSM8K_COT_EXEMPLARS[0]!.question).toMatch(/^There are 15 trees in the grove\./);
    expect(GSM8K_COT_EXEMPLARS[7]!.question).toBe('Olivia has $23. She bought five bagels for $3 each. How much money does she have left?');
  });

  it('a few-shot answer is cut at a blank line or the next "Q:"; a chat answer is kept whole', () => {
    expect(gsm8kCutAnswer(' 3 + 4 = 7. The answer is 7.\n\nQ: Tom has 5 apples')).toBe('3 + 4 = 7. The answer is 7.');
    expect(gsm8kCutAnswer(' 2 * 3 = 6. The answer is 6.\nQ: next')).toBe('2 * 3 = 6. The answer is 6.');
    expect(gsm8kCutAnswer(' The answer is 6.')).toBe('The answer is 6.');
    expect(gsm8kCutAnswer('Step 1: 3 + 4 = 7.\n\nStep 2: 7 * 2 = 14.\n\nThe answer is 14. ', 'chat')).toBe('Step 1: 3 + 4 = 7.\n\nStep 2: 7 * 2 = 14.\n\nThe answer is 14.');
    expect([gsm8kMaxNewTokens('fewshot'), gsm8kMaxNewTokens('chat')]).toEqual([256, 512]);
  });

  it('few-shot stop ids: every token whose text holds a blank line, merged forms included', () => {
    const texts: Record<number, string> = { 3: '\n\n', 5: '.\n\n', 6: '\n', 7: ' \n\n\n' };
    const tok = { encode: () => [], decode: (ids: readonly number[]) => texts[ids[0]!] ?? 'a' };
    expect(blankLineTokenIds(tok, 10)).toEqual([3, 5, 7]);
  });
});

describe('GSM8K prompts', () => {
  const tok = new CharTokenizer();
  const q = 'Tom has 5 apples and eats 2. How many are left?';

  it('fewshot: one BOS, the exemplars as "Q: …\\nA: …" blocks, then the question and "A:"', () => {
    const text = gsm8kFewshotText(q);
    expect(text.startsWith('Q: There are 15 trees in the grove.')).toBe(true);
    expect(text.split('\n\n')).toHaveLength(9);
    expect(text.endsWith(`The answer is 8.\n\nQ: ${q}\nA:`)).toBe(true);
    const ids = gsm8kPromptIds(tok, q, { template: 'fewshot' });
    expect(ids).toEqual([BOS, ...[...text].map((c) => c.codePointAt(0)! + 10)]);
    expect(gsm8kPromptIds(tok, q, { template: 'fewshot', shots: 0 })).toEqual(tok.encode(`Q: ${q}\nA:`));
    expect(() => gsm8kPromptIds(tok, q, { template: 'fewshot', shots: 9 })).toThrow(/^shots 9: must be a whole number within 0\.\.8/);
  });

  it('chat: the exemplars as turns through the template, one BOS; refused without a template', () => {
    const chat = Object.assign(new CharTokenizer(), {
      hasChatTemplate: true,
      applyChatTemplate: (m: readonly ChatMessage[], o?: { addGenerationPrompt?: boolean }) => `<s>${m.map((x) => `[${x.role}]${x.content}`).join('')}${o?.addGenerationPrompt ? '[assistant]' : ''}`,
    });
    const ids = gsm8kPromptIds(chat, q, { template: 'chat', shots: 1 });
    const e = GSM8K_COT_EXEMPLARS[0]!;
    expect(chat.decode(ids, { skipSpecialTokens: false })).toBe(`<s>[user]Q: ${e.question}[assistant]${e.answer}[user]Q: ${q}[assistant]`);
    expect(ids.filter((id) => id === BOS)).toHaveLength(1);
    expect(() => gsm8kPromptIds(tok, q, { template: 'chat' })).toThrow(/^template chat: the tokenizer has no chat template$/);
  });
});
