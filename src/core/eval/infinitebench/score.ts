/**
 * InfiniteBench compute_scores.py (§8.2): one rule per task, each giving 0/1 or a fraction, the task score the mean.
 * The rules are reproduced with their fallbacks; comments say where the reference would raise instead.
 *
 *   scoreInfinitebench('passkey', 'The pass key is 71432.', ['71432'])  // 1
 */
import { CommvqError } from '../../errors.js';
import { qaF1Score, zhCharF1 } from '../metrics/qa-f1.js';
import { hfRougeLsumF } from '../metrics/rouge-google.js';
import { PY_DIGIT, PY_WORD_END, PY_WORD_START, pyFirstChar, pyFloat, pyInt, pySplit, pyStrip } from '../py.js';
import type { InfiniteBenchAnswer } from './data.js';

type Label = InfiniteBenchAnswer;

/** `label[0]` when the label is a list (the reference's `if isinstance(label, list): label = label[0]`). */
function first(label: Label): string | number {
  return Array.isArray(label) ? label[0] : label;
}

function asList(label: Label): (string | number)[] {
  return Array.isArray(label) ? label : [label];
}

/** first_int_match: the first maximal ASCII digit run (`re.split("[^0-9]", pred)`), or ''. */
export function firstIntMatch(prediction: string): string {
  return prediction.split(/[^0-9]/).find((x) => x !== '') ?? '';
}

/** `pred.replace(c, " ")` for each listed string, in order. */
function blankOut(pred: string, chars: readonly string[]): string {
  let s = pred;
  for (const c of chars) s = s.split(c).join(' ');
  return s;
}

/** blankOut, then the reference's `while "  " in pred: pred = pred.replace("  ", " ")`. */
function blankOutCollapsed(pred: string, chars: readonly string[]): string {
  let s = blankOut(pred, chars);
  while (s.includes('  ')) s = s.split('  ').join(' ');
  return s;
}

/**
 * `re.search(r"\b[A-D]\b(?!.*\b[A-D]\b)", pred)`: `.` stops at a newline, so this is the last standalone letter
 * of the *first line that has one*; `\b` is Python's (Unicode word characters).
 */
function lastStandaloneLetter(pred: string, range: string): string | undefined {
  const atom = `${PY_WORD_START}[${range}]${PY_WORD_END}`;
  return new RegExp(`${atom}(?![^\\n]*${atom})`, 'u').exec(pred)?.[0];
}

const RETRIEVAL_CHARS = ['\n', ':', '"', "'", '.', ',', '?', '!', '{', '}'];

/** passkey, number_string: the first ASCII digit run equals the label (a string; a numeric label never matches). */
export function scorePasskey(pred: string, label: Label): number {
  return first(label) === firstIntMatch(pred) ? 1 : 0;
}

/** kv_retrieval: the label is one of the words left after blanking \n : " ' . , ? ! { }. */
export function scoreKvRetrieval(pred: string, label: Label): number {
  const words = pySplit(blankOut(pred, RETRIEVAL_CHARS));
  return words.includes(first(label) as string) ? 1 : 0;
}

/**
 * code_debug: label = [function name, option letter]. The last standalone A–J equal to the letter → 1; else strip,
 * blank out "\n ` ' \" - *" and the words Option/option, collapse spaces; starts with the letter or the name → 1;
 * else the first of "answer is:", "is:", "answer:", "correct option is:" found decides: what follows it (after one
 * more character) must start with the letter or the name.
 */
export function scoreCodeDebug(pred: string, label: Label): number {
  const list = asList(label).map(String);
  const labelC = list[1];
  const fnName = list[0];
  if (labelC === undefined) throw new CommvqError('code_debug: the ground truth must be [function name, option letter]');
  let p = pyStrip(pred);
  if (lastStandaloneLetter(p, 'A-J') === labelC) return 1;
  p = blankOutCollapsed(pyStrip(p), ['\n', '`', "'", '"', '-', '*', 'Option', 'option']);
  if (p.startsWith(labelC) || p.startsWith(fnName)) return 1;
  for (const prefix of ['answer is:', 'is:', 'answer:', 'correct option is:']) {
    const idx = p.indexOf(prefix);
    if (idx === -1) continue;
    if (p.length < idx + prefix.length + 1) return 0;
    const rest = p.slice(idx + prefix.length + 1);
    return rest.startsWith(labelC) || rest.startsWith(fnName) ? 1 : 0;
  }
  return 0;
}

/**
 * math_find: the first `\d+\.\d+|\d+` in the prediction; an integer label compares int(match), a fractional one
 * float(match). (JSON cannot tell 3 from 3.0, so an integral label is taken as int. Where the reference would call
 * int() on "3.5" and raise ValueError, we score 0.)
 */
export function scoreMathFind(pred: string, label: Label): number {
  const l = first(label);
  if (typeof l !== 'number') throw new CommvqError(`math_find: the label must be a number, got ${JSON.stringify(l)}`);
  const m = new RegExp(`${PY_DIGIT}+\\.${PY_DIGIT}+|${PY_DIGIT}+`, 'u').exec(pred);
  if (!m) return 0;
  if (Number.isInteger(l)) return pyInt(m[0]) === l ? 1 : 0;
  return pyFloat(m[0]) === l ? 1 : 0;
}

/** longdialogue_qa_eng: 1 if any label, uppercased, is a substring of the stripped, uppercased prediction. */
export function scoreLongdialogue(pred: string, label: Label): number {
  const p = pyStrip(pred).toUpperCase();
  return asList(label).some((item) => p.includes(String(item).toUpperCase())) ? 1 : 0;
}

/**
 * longbook_choice_eng: label = [answer text, option letter]. In order: the last standalone A–D is in the label → 1;
 * empty → 0; the first character is one of ABCD → whether it is in the label; the whole prediction is in the label
 * → 1; then blank out punctuation, collapse spaces and let the first of "answer is:", "answer:", "answer is",
 * "option is" decide; finally the first word that is a substring of "ABCD" decides.
 */
export function scoreChoice(pred: string, label: Label): number {
  const list = asList(label).map(String);
  let p = pyStrip(pred);
  const letter = lastStandaloneLetter(p, 'A-D');
  if (letter !== undefined && list.includes(letter)) return 1;
  if (p === '') return 0;
  const c0 = pyFirstChar(p);
  if ('ABCD'.includes(c0)) return list.includes(c0) ? 1 : 0;
  if (list.includes(p)) return 1;
  p = blankOutCollapsed(p, ['\n', '"', "'", '.', ',', '?', '!', '{', '}']);
  for (const prefix of ['answer is:', 'answer:', 'answer is', 'option is']) {
    const idx = p.indexOf(prefix);
    if (idx === -1) continue;
    if (p.length < idx + prefix.length + 1) return 0;
    const after = p.slice(idx + prefix.length + 1);
    return list.some((s) => after.startsWith(s)) ? 1 : 0;
  }
  for (const word of pySplit(p)) if ('ABCD'.includes(word)) return list.includes(word) ? 1 : 0;
  return 0;
}

/** code_run: the last word (after blanking "\n . ` ' \" :") as int equals the label. */
export function scoreCodeRun(pred: string, label: Label): number {
  const words = pySplit(blankOut(pyStrip(pred), ['\n', '.', '`', "'", '"', ':']));
  if (words.length === 0) return 0;
  const v = pyInt(words[words.length - 1]);
  return v !== undefined && v === first(label) ? 1 : 0;
}

/** math_calc: the length of the prefix of the prediction's numbers (ASCII digit runs) equal to the label, / |label|. */
export function scoreMathCalc(pred: string, label: Label): number {
  if (!Array.isArray(label)) throw new CommvqError('math_calc: the label must be a list of numbers');
  const nums = pred
    .split(/[^0-9]/)
    .filter((x) => x !== '')
    .map((x) => Number(x));
  let cnt = 0;
  for (let i = 0; i < label.length && i < nums.length; i++) {
    if (label[i] !== nums[i]) break;
    cnt++;
  }
  return cnt / label.length;
}

/** The score of one prediction for a task, in [0, 1]. */
export function scoreInfinitebench(task: string, pred: string, label: Label): number {
  switch (task) {
    case 'passkey':
    case 'number_string':
      return scorePasskey(pred, label);
    case 'kv_retrieval':
      return scoreKvRetrieval(pred, label);
    case 'longbook_qa_eng':
      return Math.max(0, ...asList(label).map((g) => qaF1Score(pred, String(g))));
    case 'longbook_qa_chn':
      return Math.max(0, ...asList(label).map((g) => zhCharF1(pred, String(g))));
    case 'longbook_sum_eng':
      return hfRougeLsumF(pred, asList(label).map(String));
    case 'longbook_choice_eng':
      return scoreChoice(pred, label);
    case 'longdialogue_qa_eng':
      return scoreLongdialogue(pred, label);
    case 'math_find':
      return scoreMathFind(pred, label);
    case 'math_calc':
      return scoreMathCalc(pred, label);
    case 'code_run':
      return scoreCodeRun(pred, label);
    case 'code_debug':
      return scoreCodeDebug(pred, label);
    default:
      throw new CommvqError(`unknown InfiniteBench task '${task}'`);
  }
}

export interface InfiniteBenchTaskScore {
  task: string;
  /** mean in [0, 1], as compute_scores.py prints it */
  mean: number;
  n: number;
  perExample: number[];
}

/** The task score: the plain mean of the per-example scores (`sum(scores) / len(scores)`). */
export function infinitebenchTaskScore(task: string, records: readonly { pred: string; groundTruth: Label }[]): InfiniteBenchTaskScore {
  if (records.length === 0) throw new CommvqError(`${task}: no predictions to score`);
  const perExample = records.map((r) => scoreInfinitebench(task, r.pred, r.groundTruth));
  let total = 0;
  for (const s of perExample) total += s;
  return { task, mean: total / records.length, n: records.length, perExample };
}
