/**
 * InfiniteBench (§8.2): tasks and intended templates, the reference-literal prompt, ground truth with option
 * letters, and every scoring rule with its fallbacks, on hand-worked predictions.
 */
import { describe, expect, it } from 'vitest';
import { parseInfinitebenchJsonl, type InfiniteBenchExample } from '../../src/core/eval/infinitebench/data.js';
import { buildInfinitebenchPrompt, codeRunCall, formatInfinitebenchPrompt, infinitebenchGroundTruth, mathFindPrefix } from '../../src/core/eval/infinitebench/prompt.js';
import {
  firstIntMatch,
  infinitebenchTaskScore,
  scoreChoice,
  scoreCodeDebug,
  scoreCodeRun,
  scoreInfinitebench,
  scoreKvRetrieval,
  scoreLongdialogue,
  scoreMathCalc,
  scoreMathFind,
  scorePasskey,
} from '../../src/core/eval/infinitebench/score.js';
import { INFINITEBENCH_PAPER_TASKS, INFINITEBENCH_TASKS, infinitebenchTask, parseInfinitebenchTasks } from '../../src/core/eval/infinitebench/tasks.js';
import { CharTokenizer } from './char-tokenizer.js';

function ex(over: Partial<InfiniteBenchExample> = {}): InfiniteBenchExample {
  return { id: '0', index: 0, context: 'CTX', input: 'IN', answer: ['a'], options: [], ...over };
}

describe('tasks and prompts', () => {
  it('the 9 paper tasks by default, 12 in all, max new tokens as the reference', () => {
    expect(parseInfinitebenchTasks(undefined).map((t) => t.name)).toEqual([...INFINITEBENCH_PAPER_TASKS]);
    expect(parseInfinitebenchTasks('all').length).toBe(12);
    expect(() => parseInfinitebenchTasks('passkey,nope')).toThrow(/unknown InfiniteBench task 'nope'/);
    const max = Object.fromEntries([...INFINITEBENCH_TASKS.values()].map((t) => [t.name, t.maxNewTokens]));
    expect(max).toEqual({
      passkey: 6,
      number_string: 12,
      kv_retrieval: 50,
      longbook_sum_eng: 1200,
      longbook_choice_eng: 40,
      longbook_qa_eng: 40,
      longbook_qa_chn: 40,
      longdialogue_qa_eng: 40,
      math_find: 3,
      math_calc: 30000,
      code_run: 5,
      code_debug: 5,
    });
    expect(infinitebenchTask('code_run').templateSource).toMatch(/yarn-mistral/);
  });

  it('uses the intended llama templates, question and options included', () => {
    expect(formatInfinitebenchPrompt(infinitebenchTask('passkey'), ex({ input: 'What is the pass key?' }))).toBe(
      'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information.\n\nCTX\n\nWhat is the pass key?\n\nThe pass key is',
    );
    expect(formatInfinitebenchPrompt(infinitebenchTask('longbook_choice_eng'), ex({ input: 'Who?', options: ['w', 'x', 'y', 'z'] }))).toBe(
      'Read the book and answer the question.\n\nCTX\n\nQuestion: Who?\nA. w\nB. x\nC. y\nD. z\n\nThe letter of the correct answer is',
    );
    expect(() => formatInfinitebenchPrompt(infinitebenchTask('code_debug'), ex({ options: ['a'] }))).toThrow(/needs 4 options/);
  });

  it('reference-literal mode feeds only the context, as eval_commvq.py does', () => {
    expect(formatInfinitebenchPrompt(infinitebenchTask('passkey'), ex({ context: 'only this' }), 'reference-literal')).toBe('only this');
  });

  it('math_find prefix: first greedy "The .+ of" match, lowercased, " of" removed', () => {
    expect(mathFindPrefix(ex({ input: 'The largest number of the list is?' }))).toBe('What is the largest number in the following list?');
    expect(mathFindPrefix(ex({ input: 'The smallest of the numbers of this list' }))).toBe('What is the smallest of the numbers in the following list?');
    expect(() => mathFindPrefix(ex({ input: 'the largest number of' }))).toThrow(/cannot find the target number/);
    expect(formatInfinitebenchPrompt(infinitebenchTask('math_find'), ex({ input: 'The max of them?' }))).toBe('What is the max in the following list?\n\nCTX\n\nThe max of them?');
  });

  it('code_run reads the function call from the input', () => {
    expect(codeRunCall(ex({ input: 'Compute func_3(-5) please' }))).toEqual({ func: 'func_3', func_call: 'func_3(-5)' });
  });

  it('truncates in the middle after the round trip', () => {
    const tok = new CharTokenizer();
    const p = buildInfinitebenchPrompt(tok, infinitebenchTask('kv_retrieval'), ex(), { maxPromptTokens: 20 });
    expect(p.truncated).toBe(true);
    expect(p.text).toBe('Extract t' + '.\n\nCTX\n\nIN'); // [BOS + 9 characters] + the last 10 characters
  });

  it('ground truth: [answer, option letter] for choice and code_debug', () => {
    const options = ['Rome', 'Paris', 'Oslo', 'Bern'];
    expect(infinitebenchGroundTruth(infinitebenchTask('longbook_choice_eng'), ex({ answer: ['Paris'], options }))).toEqual(['Paris', 'B']);
    expect(infinitebenchGroundTruth(infinitebenchTask('code_debug'), ex({ answer: 'Bern', options }))).toEqual(['Bern', 'D']);
    expect(infinitebenchGroundTruth(infinitebenchTask('code_debug'), ex({ answer: ['Oslo', 'C'], options }))).toEqual(['Oslo', 'C']);
    expect(() => infinitebenchGroundTruth(infinitebenchTask('code_debug'), ex({ answer: ['Lima'], options }))).toThrow(/not among options/);
    expect(infinitebenchGroundTruth(infinitebenchTask('passkey'), ex({ answer: ['123'] }))).toEqual(['123']);
  });
});

describe('scoring rules', () => {
  it('passkey / number_string: the first ASCII digit run equals the label string', () => {
    expect(firstIntMatch('key: 7143 2')).toBe('7143');
    expect(scorePasskey('The pass key is 71432.', ['71432'])).toBe(1);
    expect(scorePasskey('71432 or 1', ['1'])).toBe(0);
    expect(scorePasskey('71432', [71432])).toBe(0); // the reference compares the label with a string
    expect(scoreInfinitebench('number_string', 'It is 0042.', ['0042'])).toBe(1);
  });

  it('kv_retrieval: the label is a word after blanking \\n : " \' . , ? ! { }', () => {
    expect(scoreKvRetrieval('The value is "a1b2-c3".', ['a1b2-c3'])).toBe(1);
    expect(scoreKvRetrieval('a1b2-c3x', ['a1b2-c3'])).toBe(0);
  });

  it('longbook_qa_eng: qa F1, max over labels; longbook_sum_eng: rougeLsum F, best label', () => {
    expect(scoreInfinitebench('longbook_qa_eng', 'the cat', ['a dog', 'The cat.'])).toBe(1);
    expect(scoreInfinitebench('longbook_sum_eng', 'the cat ran', ['x', 'the cat sat\nthe dog ran'])).toBeCloseTo(2 / 3, 15);
  });

  it('longbook_choice_eng: last standalone letter, first character, whole answer, answer prefixes, first letter word', () => {
    const label = ['Paris', 'B'];
    expect(scoreChoice('I think B is right', label)).toBe(1); // last standalone A–D is B
    expect(scoreChoice('B. Paris, not A', label)).toBe(1); // last standalone is A (wrong) → first character B decides
    expect(scoreChoice('A. no', label)).toBe(0); // first character A decides
    expect(scoreChoice('   ', label)).toBe(0);
    expect(scoreChoice('Paris', label)).toBe(1); // the whole prediction is in the label
    expect(scoreChoice('The answer is: Paris!', label)).toBe(1); // prefix, then one character, then the label
    expect(scoreChoice('so the answer is', label)).toBe(0); // the prefix ends the string
    expect(scoreChoice('so: C or D', ['Paris', 'C'])).toBe(1); // last letter D is wrong; first word inside "ABCD" is C
    expect(scoreChoice('mine: BC', label)).toBe(0); // "BC" is a substring of "ABCD", and decides (wrongly)
    // Python's \b is Unicode-aware: "éB" has no boundary before B, so nothing matches (an ASCII \b would find B)
    expect(scoreChoice('éB', label)).toBe(0);
    // "." stops at newlines: the regex finds A (last letter of the first line with one), not B; then "A" decides
    expect(scoreChoice('A\nB', label)).toBe(0);
  });

  it('longdialogue_qa_eng: any label, uppercased, inside the uppercased prediction', () => {
    expect(scoreLongdialogue(' it is Sherlock ', ['SHERLOCK', 'x'])).toBe(1);
    expect(scoreLongdialogue('Sherlock', ['Watson'])).toBe(0);
  });

  it('math_find: the first number; int labels compare int(), float labels float()', () => {
    expect(scoreMathFind('(42)', [42])).toBe(1);
    expect(scoreMathFind('about 3.14 here', [3.14])).toBe(1);
    expect(scoreMathFind('3.5', [3])).toBe(0); // int("3.5") raises in the reference
    expect(scoreMathFind('none', [3])).toBe(0);
    expect(scoreMathFind('٤٢', [42])).toBe(1); // Unicode digits, as Python's \d and int()
  });

  it('code_debug: last standalone A–J, then starts-with letter or name, then the answer prefixes', () => {
    const label = ['foo_bar', 'B'];
    expect(scoreCodeDebug('The answer is B.', label)).toBe(1);
    expect(scoreCodeDebug('foo_bar (C is not it)', label)).toBe(1); // last letter C is wrong; starts with the name
    // "option" is blanked before the prefixes are searched, so "correct option is:" is found as "is:"
    expect(scoreCodeDebug('E is wrong; the correct option is: foo_bar', label)).toBe(1);
    expect(scoreCodeDebug('F answer:', label)).toBe(0); // the prefix ends the string
    expect(scoreCodeDebug('-B-', label)).toBe(1);
    expect(scoreCodeDebug('nothing here', label)).toBe(0);
  });

  it('code_run and math_calc', () => {
    expect(scoreCodeRun('The value is 42.', [42])).toBe(1);
    expect(scoreCodeRun('42 is it', [42])).toBe(0);
    expect(scoreMathCalc('1, 4, 9, 3', [1, 4, 8, 3])).toBe(0.5);
    expect(scoreMathCalc('-1', [-1])).toBe(0); // the minus sign is a separator
  });

  it('the task score is the plain mean in [0, 1]', () => {
    const s = infinitebenchTaskScore('passkey', [
      { pred: '1', groundTruth: ['1'] },
      { pred: '2', groundTruth: ['1'] },
      { pred: '1', groundTruth: ['1'] },
    ]);
    expect(s.mean).toBe(2 / 3);
    expect(() => scoreInfinitebench('nope', '', [])).toThrow(/unknown InfiniteBench task/);
  });
});

describe('reading the JSON-lines files', () => {
  it('reads id, context, input, answer, options; numeric ids become strings', () => {
    const e = parseInfinitebenchJsonl('{"id": 12, "context": "c", "input": "i", "answer": ["x"], "options": ["a","b","c","d"]}\n', 'passkey.jsonl');
    expect(e[0]).toEqual({ id: '12', index: 0, context: 'c', input: 'i', answer: ['x'], options: ['a', 'b', 'c', 'd'] });
  });

  it('names the line of a bad record', () => {
    expect(() => parseInfinitebenchJsonl('{"id": 1, "context": "c", "answer": ["x"]}\n{"id": 2, "answer": ["x"]}', 'kv.jsonl')).toThrow('kv.jsonl:2: field "context" must be a string');
    expect(() => parseInfinitebenchJsonl('{"id": 1, "context": "c", "answer": {"a": 1}}', 'kv.jsonl')).toThrow('kv.jsonl:1: field "answer" must be');
    expect(() => parseInfinitebenchJsonl('', 'kv.jsonl')).toThrow('kv.jsonl: no examples: the task file is empty');
    expect(() => parseInfinitebenchJsonl('{"id": 1, "context": "c", "answer": [1]}\nnot json', 'kv.jsonl')).toThrow(/^kv\.jsonl:2: not a valid JSON line/);
  });
});
