/**
 * The windows of a perplexity run over one token stream, as Hugging Face's "Perplexity of fixed-length models"
 * computes them: windows of `context` tokens starting every `stride` tokens; each scores only the targets no earlier
 * window scored (its last end − previous end tokens), so every target is scored once, with as much context before it
 * as the window holds. A window's first token is never a target (nothing before it predicts it). stride = context
 * (the default) gives disjoint windows; a smaller stride gives every scored token at least context − stride tokens
 * of context.
 *
 *   perplexityWindows(10, 4, 2)
 *   // [{ begin: 0, end: 4, scoreFrom: 1 }, { begin: 2, end: 6, scoreFrom: 2 }, { begin: 4, end: 8, scoreFrom: 2 }, { begin: 6, end: 10, scoreFrom: 2 }]
 */
import { OptionError } from '../../errors.js';

export interface PerplexityWindow {
  /** index of the window in the run: its id in the window log */
  index: number;
  /** tokens [begin, end) of the stream */
  begin: number;
  end: number;
  /** the targets are the window's tokens at offsets [scoreFrom, end − begin), each predicted from those before it */
  scoreFrom: number;
}

/** The windows over a stream of `tokens` tokens; context ≥ 2, 1 ≤ stride ≤ context. */
export function perplexityWindows(tokens: number, context: number, stride = context): PerplexityWindow[] {
  if (!Number.isInteger(context) || context < 2) throw new OptionError('context', String(context), 'must be a whole number of at least 2 tokens');
  if (!Number.isInteger(stride) || stride < 1 || stride > context) throw new OptionError('stride', String(stride), `must be a whole number within 1..${context} (the context)`);
  if (tokens < 2) throw new OptionError('data', undefined, `the corpus holds ${tokens} token(s): perplexity needs at least 2`);
  const windows: PerplexityWindow[] = [];
  let previousEnd = 0;
  for (let begin = 0; begin < tokens; begin += stride) {
    const end = Math.min(begin + context, tokens);
    const targets = end - previousEnd; // HF's trg_len
    const scoreFrom = Math.max(1, end - begin - targets);
    if (end - begin >= 2 && scoreFrom < end - begin) windows.push({ index: windows.length, begin, end, scoreFrom });
    previousEnd = end;
    if (end === tokens) break;
  }
  return windows;
}
