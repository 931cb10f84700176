/**
 * LongBench (§8.1): the task table, prompts, middle truncation, chat rule, generation settings, post-processing,
 * per-task scoring rules, LongBench-E buckets, the average, and the JSON-lines reader's errors.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../../src/core/tokenizer/text-tokenizer.js';
import { longbenchDataPath, parseLongbenchJsonl, readLongbenchFile, type LongBenchExample } from '../../src/core/eval/longbench/data.js';
import { buildLongbenchPrompt, formatLongbenchPrompt, longbenchGeneration, longbenchPostprocess, newlineTokenId } from '../../src/core/eval/longbench/prompt.js';
import { firstLine, longbenchAverage, longbenchTaskScore, longbenchTaskScoreE, scoreLongbenchExample } from '../../src/core/eval/longbench/score.js';
import { LONGBENCH_DEFAULT_TASKS, LONGBENCH_TASKS, longbenchTask, parseLongbenchTasks } from '../../src/core/eval/longbench/tasks.js';
import { infinitebenchTruncate, longbenchTruncate, promptTokenBudget } from '../../src/core/eval/truncate.js';
import { BOS, CharTokenizer } from './char-tokenizer.js';

const tok = new CharTokenizer();
const dir = mkdtempSync(join(tmpdir(), 'commvq-longbench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function example(over: Partial<LongBenchExample> = {}): LongBenchExample {
  return { id: 'x', index: 0, input: 'Q?', context: 'C.', answers: ['a'], length: 10, allClasses: null, ...over };
}

describe('tasks', () => {
  it('the 8 default tasks with their max new tokens, metrics and rules', () => {
    expect([...LONGBENCH_DEFAULT_TASKS]).toEqual(['qasper', 'qmsum', 'multi_news', 'trec', 'triviaqa', 'samsum', 'lcc', 'repobench-p']);
    const table = LONGBENCH_DEFAULT_TASKS.map((n) => {
      const t = longbenchTask(n);
      return [n, t.maxNewTokens, t.metric, t.firstLineOnly];
    });
    expect(table).toEqual([
      ['qasper', 128, 'qa_f1', false],
      ['qmsum', 512, 'rouge', false],
      ['multi_news', 512, 'rouge', false],
      ['trec', 64, 'classification', true],
      ['triviaqa', 32, 'qa_f1', true],
      ['samsum', 128, 'rouge', true],
      ['lcc', 64, 'code_sim', false],
      ['repobench-p', 64, 'code_sim', false],
    ]);
    expect(LONGBENCH_TASKS.size).toBe(21);
    expect([...LONGBENCH_TASKS.values()].filter((t) => t.skipChatTemplate).map((t) => t.name)).toEqual(['trec', 'triviaqa', 'samsum', 'lsht', 'lcc', 'repobench-p']);
  });

  it('--tasks: names, default, all; unknown names and LongBench-E gaps are errors', () => {
    expect(parseLongbenchTasks(undefined).length).toBe(8);
    expect(parseLongbenchTasks('all').length).toBe(21);
    expect(parseLongbenchTasks('trec, qasper').map((t) => t.name)).toEqual(['trec', 'qasper']);
    expect(() => parseLongbenchTasks('qasper,nope')).toThrow(/unknown LongBench task 'nope'/);
    expect(parseLongbenchTasks('default', { e: true }).map((t) => t.name)).not.toContain('qmsum'); // qmsum has no _e file
    expect(() => parseLongbenchTasks('qmsum', { e: true })).toThrow(/LongBench-E has no version of qmsum/);
  });
});

describe('prompts and truncation', () => {
  it('formats the template with the example (braces in the context are left alone)', () => {
    expect(formatLongbenchPrompt(longbenchTask('trec'), example({ context: 'Ex {1}', input: 'Who?' }))).toBe(
      'Please determine the type of the question below. Here are some examples of questions.\n\nEx {1}\nWho?',
    );
    expect(formatLongbenchPrompt(longbenchTask('lcc'), example({ context: 'def f():\n' }))).toBe('Please complete the code given below. \ndef f():\nNext line of code:\n');
  });

  it('middle truncation keeps floor(max/2) tokens of each end, decoded without BOS, re-encoded with it', () => {
    // 'abcdefghij' → [BOS, a..j] = 11 tokens; max 6 → [BOS, a, b] + [h, i, j] → "ab" + "hij"
    const t = longbenchTruncate(tok, 'abcdefghij', 6);
    expect(t).toEqual({ text: 'abhij', ids: tok.encode('abhij'), truncated: true, originalTokens: 11 });
    expect(longbenchTruncate(tok, 'abcdefghij', 7).text).toBe('abhij'); // half = 3 for 7 too
    expect(longbenchTruncate(tok, 'abcdefghij', 11)).toMatchObject({ text: 'abcdefghij', truncated: false });
    expect(() => longbenchTruncate(tok, 'abc', 1)).toThrow(/at least 2/);
  });

  it('InfiniteBench always decodes and re-encodes, even when nothing is cut', () => {
    // the literal "<s>" is parsed as BOS by encode and dropped by decode(skip special)
    expect(infinitebenchTruncate(tok, 'x<s>y', 100)).toMatchObject({ text: 'xy', truncated: false, ids: [BOS, ...tok.encode('xy', { addSpecialTokens: false })] });
    expect(longbenchTruncate(tok, 'x<s>y', 100).text).toBe('x<s>y');
    expect(infinitebenchTruncate(tok, 'abcdefghij', 6)).toMatchObject({ text: 'abhij', truncated: true });
  });

  it('the prompt budget is 127,500 or what the context leaves', () => {
    expect(promptTokenBudget(131072, 512)).toBe(127500);
    expect(promptTokenBudget(8192, 128)).toBe(8064);
    expect(() => promptTokenBudget(100, 128)).toThrow(/no room/);
  });

  it('no chat template by default (the reference); with chat, only on the tasks LongBench allows', () => {
    const chatTok = Object.assign(new CharTokenizer(), {
      hasChatTemplate: true,
      applyChatTemplate: (m: readonly ChatMessage[]) => `<s>[U]${m[0].content}[/U]`,
    });
    const ex = example({ context: 'ctx', input: 'q' });
    const plain = buildLongbenchPrompt(chatTok, longbenchTask('qasper'), ex, { maxPromptTokens: 10_000 });
    expect(plain.chatTemplate).toBe(false);
    expect(plain.ids).toEqual(tok.encode(formatLongbenchPrompt(longbenchTask('qasper'), ex)));
    const chat = buildLongbenchPrompt(chatTok, longbenchTask('qasper'), ex, { maxPromptTokens: 10_000, chat: 'template' });
    expect(chat.chatTemplate).toBe(true);
    expect(chat.ids.filter((id) => id === BOS)).toEqual([BOS]); // one BOS: the template's
    expect(buildLongbenchPrompt(chatTok, longbenchTask('trec'), ex, { maxPromptTokens: 10_000, chat: 'template' }).chatTemplate).toBe(false);
  });
});

describe('generation and post-processing', () => {
  it('samsum stops at EOS or newline and generates at least one token; others use the model eos list', () => {
    const ids = { modelEosTokenIds: [128001, 128008, 128009], tokenizerEosTokenId: 128009, newlineTokenId: 198 };
    expect(longbenchGeneration(longbenchTask('samsum'), ids)).toEqual({ maxNewTokens: 128, eosTokenIds: [128009, 198], minNewTokens: 1 });
    expect(longbenchGeneration(longbenchTask('qasper'), ids)).toEqual({ maxNewTokens: 128, eosTokenIds: [128001, 128008, 128009], minNewTokens: 0 });
    expect(() => longbenchGeneration(longbenchTask('samsum'), { modelEosTokenIds: [1] })).toThrow(/newline stop/);
    expect(newlineTokenId(tok)).toBe(10 + 10);
  });

  it('cuts at "\\n\\nQuestion", then "</s>", then strips', () => {
    expect(longbenchPostprocess('  Paris\n\nQuestion: and?')).toBe('Paris');
    expect(longbenchPostprocess(' a</s>b ')).toBe('a');
    expect(longbenchPostprocess('x (Document 2)\n\nAnswer: y', { llama2: true })).toBe('x');
  });
});

describe('scoring', () => {
  it('first line only for trec, triviaqa, samsum, lsht', () => {
    expect(firstLine('\n\nParis is the answer\nLondon')).toBe('Paris is the answer');
    // triviaqa: "paris is answer" vs "paris" → P 1/3, R 1 → 1/2; the second line never counts
    expect(scoreLongbenchExample(longbenchTask('triviaqa'), '\n\nParis is the answer\nLondon', ['Paris'], null)).toBe(0.5);
    expect(scoreLongbenchExample(longbenchTask('triviaqa'), '\nLondon', ['Paris', 'London'], null)).toBe(1);
    // qasper keeps every line: [yes, no] vs [no]
    expect(scoreLongbenchExample(longbenchTask('qasper'), 'yes\nno', ['no'], null)).toBe(2 / 3);
  });

  it('takes the max over the gold answers', () => {
    expect(scoreLongbenchExample(longbenchTask('qasper'), 'cat sat', ['cat', 'The cat sat.'], null)).toBe(1);
  });

  it('task score round(100·mean, 2), with the last record’s all_classes for every example', () => {
    const trec = longbenchTask('trec');
    const records = [
      { pred: 'Location', answers: ['Location'], allClasses: ['Other'], length: 1 },
      { pred: 'Human', answers: ['Location'], allClasses: ['Human', 'Location'], length: 1 },
      { pred: 'none', answers: ['Location'], allClasses: ['Human', 'Location'], length: 1 },
    ];
    // with the first record's own classes ['Other'] its score would be 0; eval.py uses the last ['Human', 'Location']
    const s = longbenchTaskScore(trec, records);
    expect(s.perExample).toEqual([1, 0, 0]);
    expect(s.score).toBe(33.33);
    expect(() => longbenchTaskScore(trec, [])).toThrow(/no predictions/);
  });

  it('LongBench-E buckets by length: <4000, <8000, the rest; an empty bucket is null', () => {
    const qasper = longbenchTask('qasper');
    const r = (pred: string, length: number) => ({ pred, answers: ['yes'], allClasses: null, length });
    expect(longbenchTaskScoreE(qasper, [r('yes', 100), r('no', 3999), r('yes', 4000), r('yes', 8000)])).toEqual({ '0-4k': 50, '4-8k': 100, '8k+': 100 });
    expect(longbenchTaskScoreE(qasper, [r('yes', 100)])).toEqual({ '0-4k': 100, '4-8k': null, '8k+': null });
  });

  it('the average is round(mean of the task scores, 2), unweighted', () => {
    expect(longbenchAverage({ qasper: 33.33, trec: 50 })).toBe(41.66); // 41.665 is 41.66499… in binary
    expect(() => longbenchAverage({})).toThrow(/no task scores/);
  });

  it('the Chinese word-segmented metrics are refused with a hint', () => {
    expect(() => scoreLongbenchExample(longbenchTask('vcsum'), 'a', ['b'], null)).toThrow(/jieba/);
  });
});

describe('reading the official JSON-lines files', () => {
  const line = (o: object) => JSON.stringify({ input: 'q', context: 'c', answers: ['a'], length: 5, dataset: 'qasper', language: 'en', all_classes: null, _id: 'id1', ...o });

  it('reads the fields; blank lines are skipped; a file without _id falls back to line numbers', () => {
    const ex = parseLongbenchJsonl(`${line({})}\n\n${line({ _id: 'id2', all_classes: ['x', 'y'] })}\n`, 'qasper.jsonl');
    expect(ex.map((e) => [e.id, e.index, e.allClasses])).toEqual([
      ['id1', 0, null],
      ['id2', 1, ['x', 'y']],
    ]);
    expect(parseLongbenchJsonl(line({ _id: undefined }), 'f.jsonl')[0].id).toBe('line-1');
  });

  it('names the file and line of a malformed line, a bad field, a repeated id', () => {
    expect(() => parseLongbenchJsonl(`${line({})}\n{"input": "q",\n`, 'qasper.jsonl')).toThrow(/^qasper\.jsonl:2: not a valid JSON line/);
    expect(() => parseLongbenchJsonl(line({ answers: 'a' }), 'qasper.jsonl')).toThrow('qasper.jsonl:1: field "answers" must be a list of strings');
    expect(() => parseLongbenchJsonl('\n', 'qasper.jsonl')).toThrow('qasper.jsonl: no examples: the task file is empty');
    expect(() => parseLongbenchJsonl(`${line({})}\n${line({})}`, 'qasper.jsonl')).toThrow("qasper.jsonl:2: _id 'id1' repeats line 1");
    expect(() => parseLongbenchJsonl('[1, 2]', 'qasper.jsonl')).toThrow('qasper.jsonl:1: expected a JSON object');
  });

  it('a missing dataset file is an error naming it', () => {
    const path = longbenchDataPath(dir, 'qasper', true);
    expect(path).toBe(join(dir, 'qasper_e.jsonl'));
    expect(() => readLongbenchFile(path)).toThrow(`${path}: file not found`);
    writeFileSync(longbenchDataPath(dir, 'trec'), `${line({ _id: 't1' })}\n`);
    expect(readLongbenchFile(longbenchDataPath(dir, 'trec'))[0].id).toBe('t1');
  });
});
