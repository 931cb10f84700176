/**
 * A tokenizer to hand-work truncation and prompts with: one token per character (id = code point + 10), BOS = 1
 * added by `encode` unless told not to, and the literal text "<s>" parsed as BOS, like Hugging Face tokenizers do
 * with special-token strings. `decode` skips BOS by default and writes it as "<s>" otherwise.
 */
import type { EvalTokenizer } from '../../src/core/eval/tokenizer.js';

export const BOS = 1;

export class CharTokenizer implements EvalTokenizer {
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids: number[] = options.addSpecialTokens ?? true ? [BOS] : [];
    const parts = text.split('<s>');
    parts.forEach((part, i) => {
      if (i > 0) ids.push(BOS);
      for (const ch of part) ids.push(ch.codePointAt(0)! + 10);
    });
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    return ids.map((id) => (id === BOS ? (skip ? '' : '<s>') : String.fromCodePoint(id - 10))).join('');
  }
}
