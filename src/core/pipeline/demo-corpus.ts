import { writeFileAtomic } from '../io/atomic-write.js';
import { fillerText } from '../eval/niah/filler.js';

/**
 * The pipeline's default corpus, made by code: the seeded filler grammar of the NIAH haystack (eval/niah/filler.ts)
 * under its own seeds, one paragraph per JSON line (`{"text": ...}`), the same bytes on every machine. The training
 * corpus, the agreement prompt and the NIAH haystack (seed 1) use three different seeds, so no stage is scored on
 * text another stage trained on word for word.
 *
 *   writeGeneratedCorpus('runs/p/corpus.jsonl', 40_000)  // { documents: 97, chars: 40123 }
 */
export const CORPUS_SEED = 7;
export const AGREEMENT_PROMPT_SEED = 3;

export function writeGeneratedCorpus(path: string, minChars: number): { path: string; documents: number; chars: number } {
  const paragraphs = fillerText(CORPUS_SEED, minChars).split('\n\n').filter((p) => p !== '');
  const text = paragraphs.map((p) => JSON.stringify({ text: p })).join('\n') + '\n';
  writeFileAtomic(path, [Buffer.from(text)]);
  return { path, documents: paragraphs.length, chars: paragraphs.reduce((n, p) => n + p.length, 0) };
}

/** Filler text of at least `minChars` characters for the agreement prompt (not in the training corpus). */
export function agreementPromptText(minChars: number): string {
  return fillerText(AGREEMENT_PROMPT_SEED, minChars);
}
