/**
 * NIAH for base models and RULER's variants (issue 20): the prompt templates as token ids (raw, custom, chat, plain),
 * needles that vary per cell and are the same for a seed, several needles placed in one context, and the scorers
 * (contains: RULER's recall of the values).
 */
import { describe, expect, it } from 'vitest';
import { fillerText } from '../../src/core/eval/niah/filler.js';
import { insertNeedle, insertNeedles } from '../../src/core/eval/niah/needle.js';
import { NEEDLE_WORDS, NeedleGenerator, RULER_NEEDLE, RULER_QUESTION } from '../../src/core/eval/niah/needle-generator.js';
import { niahGeneration, niahPromptIds, parseNiahTemplate } from '../../src/core/eval/niah/prompt.js';
import { niahRecordExpected, niahScore, niahScoreExpected, parseNiahScorer } from '../../src/core/eval/niah/score.js';
import type { ChatMessage } from '../../src/core/tokenizer/text-tokenizer.js';
import { BOS, CharTokenizer } from './char-tokenizer.js';

const tok = new CharTokenizer();
const ids = (s: string) => [...s].map((c) => c.codePointAt(0)! + 10);
const chatTok = Object.assign(new CharTokenizer(), {
  hasChatTemplate: true,
  applyChatTemplate: (m: readonly ChatMessage[], o?: { addGenerationPrompt?: boolean }) => `<s>${m.map((x) => `[${x.role}]${x.content}`).join('')}${o?.addGenerationPrompt ? '[assistant]' : ''}`,
});
const context = ids('Hay. The pass key is 123. Hay.');

describe('NIAH templates', () => {
  it('raw: BOS, the context ids, then the question’s ids, nothing else', () => {
    const p = niahPromptIds(tok, context, { template: 'raw', question: ' The pass key is' });
    expect(p).toEqual({ ids: [BOS, ...context, ...ids(' The pass key is')], template: 'raw' });
    // raw on a chat model ignores its template
    expect(niahPromptIds(chatTok, context, { template: 'raw', question: '?' }).ids).toEqual([BOS, ...context, ...ids('?')]);
  });

  it('custom: the text around {context} and {question}, one BOS, braces doubled are literal', () => {
    const t = parseNiahTemplate('Q: {question}\n{{doc}} {context}\nA:');
    const p = niahPromptIds(tok, context, { template: t, question: 'pass key?' });
    expect(p).toEqual({ ids: [BOS, ...ids('Q: pass key?\n{doc} '), ...context, ...ids('\nA:')], template: 'custom' });
    expect(niahPromptIds(tok, context, { template: parseNiahTemplate('{context}'), question: 'x' }).ids).toEqual([BOS, ...context]);
    // a template that starts with the BOS text itself still gives one BOS
    expect(niahPromptIds(tok, context, { template: parseNiahTemplate('<s>{context}'), question: 'x' }).ids).toEqual([BOS, ...context]);
  });

  it('chat and plain: asked for by name; chat refused without a template; auto picks as before', () => {
    const chat = niahPromptIds(chatTok, context, { template: 'chat', question: 'Q?', instruction: 'I.', system: 'S.' });
    expect(chat.template).toBe('chat');
    expect(chat.ids).toEqual([BOS, ...ids('[system]S.[user]'), ...context, ...ids('[user]Q? I.[assistant][assistant]')]);
    expect(niahPromptIds(chatTok, context).ids).toEqual(niahPromptIds(chatTok, context, { template: 'chat' }).ids);
    const plain = niahPromptIds(chatTok, context, { template: 'plain', question: 'Q?' });
    expect(plain.template).toBe('plain');
    expect(plain.ids.slice(0, 1)).toEqual([BOS]);
    expect(tok.decode(plain.ids)).toBe(`This is a very long story book: <book> ${tok.decode(context)} </book>.\n Based on the content of the book, Question: Q?\nAnswer:`);
    expect(() => niahPromptIds(tok, context, { template: 'chat' })).toThrow(/^template chat: the tokenizer has no chat template$/);
  });

  it('a template without {context}, with it twice, or with another placeholder is refused in one line', () => {
    expect(() => parseNiahTemplate('chatty')).toThrow(/^template chatty: is chat, plain, raw, or a text holding \{context\}/);
    expect(() => parseNiahTemplate('{context}{context}')).toThrow(/\{context\} must appear exactly once$/);
    expect(() => parseNiahTemplate('{context} {answer}')).toThrow(/^template \{context\} \{answer\}: no placeholder 'answer'$/);
  });
});

describe('varied needles', () => {
  const passkey = { needle: 'The pass key is {digits:7}. Remember it.', question: 'What is the pass key?' };

  it('the same cell and seed give the same needle; other cells and seeds give others', () => {
    const a = NeedleGenerator.create({ ...passkey, seed: 42 });
    const b = NeedleGenerator.create({ ...passkey, seed: 42 });
    const cells = ['len_1000_depth_0', 'len_1000_depth_50', 'len_2000_depth_0', 'len_2000_depth_50'];
    expect(cells.map((c) => a.cell(c))).toEqual(cells.map((c) => b.cell(c)));
    const values = cells.map((c) => a.cell(c).answers[0]!);
    expect(new Set(values).size).toBe(4);
    for (const v of values) expect(v).toMatch(/^[1-9]\d{6}$/);
    expect(a.cell(cells[0]!)).toEqual({ needles: [{ text: `The pass key is ${values[0]}. Remember it.`, depth: null }], answers: [values[0]], asked: [`The pass key is ${values[0]}. Remember it.`], question: 'What is the pass key?' });
    expect(NeedleGenerator.create({ ...passkey, seed: 7 }).cell(cells[0]!).answers[0]).not.toBe(values[0]);
    expect(a.describe()).toEqual({ keys: 1, values: 1, queries: 1, seed: 42 });
    expect(a.varies).toBe(true);
    expect(NeedleGenerator.create({ needle: 'Fixed.', question: 'q', seed: 1 }).varies).toBe(false);
  });

  it('{words:N}: N words of a list the filler never uses', () => {
    const w = NeedleGenerator.create({ needle: 'The secret is {words:3}.', question: 'q', seed: 1 }).cell('c').answers[0]!;
    expect(w.split('-')).toHaveLength(3);
    for (const word of w.split('-')) expect(NEEDLE_WORDS).toContain(word);
    const filler = new Set(fillerText(1, 200_000).toLowerCase().split(/[^a-z]+/));
    expect(NEEDLE_WORDS.filter((x) => filler.has(x))).toEqual([]);
  });

  it('RULER variants: distinct keys, values per key, the asked keys’ values expected and named in the question', () => {
    const g = NeedleGenerator.create({ needle: RULER_NEEDLE, question: RULER_QUESTION, seed: 3, keys: 4, values: 2, queries: 2 });
    const c = g.cell('len_4000_depth_50');
    expect(c.needles).toHaveLength(8);
    expect(c.needles[0]!.depth).toBeNull();
    for (const n of c.needles.slice(1)) expect(n.depth).toBeGreaterThanOrEqual(0), expect(n.depth).toBeLessThanOrEqual(100);
    const keys = [...new Set(c.needles.map((n) => /for (\S+) is/.exec(n.text)![1]!))];
    expect(keys).toHaveLength(4);
    expect(c.question).toBe(`What are all the special magic numbers for ${keys[0]} and ${keys[1]} mentioned in the provided text?`);
    expect(c.asked).toEqual(c.needles.slice(0, 4).map((n) => n.text));
    expect(c.answers).toEqual(c.asked.map((t) => /is: (\d{7})\.$/.exec(t)![1]));
    expect(niahGeneration({ tokenizerEosTokenId: 2, newlineTokenId: 13 }, { severalValues: true })).toEqual({ maxNewTokens: 128, eosTokenIds: [2] });
  });

  it('refuses two values, unknown placeholders, several keys without {key}, more queries than keys', () => {
    expect(() => NeedleGenerator.create({ needle: '{digits:3} {words:2}', question: 'q', seed: 1 })).toThrow(/more than one value placeholder/);
    expect(() => NeedleGenerator.create({ needle: 'The {colour} key', question: 'q', seed: 1 })).toThrow(/unknown placeholder \{colour\}/);
    expect(() => NeedleGenerator.create({ ...passkey, seed: 1, keys: 2 })).toThrow(/^keys 2: several keys need \{key\} in the needle$/);
    expect(() => NeedleGenerator.create({ needle: RULER_NEEDLE, question: 'q', seed: 1, keys: 2, queries: 3 })).toThrow(/^queries 3: asks more keys than the 2 needle key\(s\)$/);
  });
});

describe('several needles in one context', () => {
  const periods = new Set([ids('.')[0]!]);
  const haystack = ids('Aa. Bb. Cc. Dd. Ee. Ff. Gg. Hh. Ii. Jj. Kk. Ll. Mm. Nn. Oo. Pp. Qq. Rr. Ss. Tt. '.repeat(4));

  it('one needle is insertNeedle; several each sit once after a period, the context L − buffer long', () => {
    const one = { haystack, contextLength: 120, periodIds: periods, buffer: 20 };
    expect(insertNeedles({ ...one, needles: [{ ids: ids('N1.'), depth: 50 }] })).toEqual(insertNeedle({ ...one, needle: ids('N1.'), depthPercent: 50 }));
    const p = insertNeedles({ ...one, needles: [{ ids: ids('XX.'), depth: 50 }, { ids: ids('YY.'), depth: 10 }, { ids: ids('ZZ.'), depth: 100 }] });
    const text = tok.decode(p.ids);
    expect(p.ids).toHaveLength(100);
    for (const n of ['XX.', 'YY.', 'ZZ.']) expect(text.split(n)).toHaveLength(2);
    expect(text.indexOf('YY.')).toBeLessThan(text.indexOf('XX.'));
    expect(text.endsWith('ZZ.')).toBe(true);
    expect(tok.decode(p.ids.slice(p.insertionPoint, p.insertionPoint + 3))).toBe('XX.');
    expect(text[text.indexOf('XX.') - 1]).toBe('.'); // right after a sentence end
  });
});

describe('NIAH scorers', () => {
  it('contains: the share of expected values in the answer × 10, case-insensitive (RULER’s string_match_all)', () => {
    const expected = { asked: ['One of the special magic numbers for a-b is: 1234567.', 'One of the special magic numbers for a-b is: 7654321.'], answers: ['1234567', '7654321'] };
    expect(niahScoreExpected('The numbers are 1234567 and 42.', 'contains', expected)).toBe(5);
    expect(niahScoreExpected('7654321, 1234567', 'contains', expected)).toBe(10);
    expect(niahScoreExpected('', 'contains', expected)).toBe(0);
    expect(niahScoreExpected('one of the special magic numbers for a-b is: 1234567. One of the special magic numbers for a-b is 7654321', 'exact', expected)).toBe(10);
    expect(niahScoreExpected('One of the special magic numbers for a-b is: 1234567.', 'exact', expected)).toBe(0);
    expect(niahScore('eat a sandwich and sit in dolores park', 'contains', 'Eat a sandwich and sit in Dolores Park')).toBe(10);
    expect(parseNiahScorer('contains')).toBe('contains');
    expect(niahRecordExpected({ asked: ['x 1.'], answers: ['1'] }, 'fixed')).toEqual({ asked: ['x 1.'], answers: ['1'] });
    expect(niahRecordExpected({}, '\nfixed.\n')).toEqual({ asked: ['\nfixed.\n'], answers: ['fixed.'] });
  });
});
