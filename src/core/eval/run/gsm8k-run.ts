/**
 * `commvq eval gsm8k`: GSM8K under a protocol of our own (neither the CommVQ reference nor its fork has a GSM8K
 * harness: spec §8.4), so its numbers are comparable between caches here, not to a published table. Per example:
 * the 8-shot chain-of-thought prompt of Wei et al. (fewshot, base models) or the same exemplars as chat turns (chat,
 * instruct models), greedy decoding (few-shot: up to 256 tokens, stopping at EOS or a blank line, the answer cut
 * there or at the next "Q:"; chat: up to 512 tokens, to the end of the turn), the final number extracted (answer.ts)
 * and compared by value with the dataset's "#### N".
 *
 *   const r = await runGsm8k({ modelDir, data: 'gsm8k/test.jsonl', out: 'runs/gsm8k-dense', backend, template: 'fewshot' });
 *   r.summary.accuracy   // percent
 */
import { EVAL_DEPARTURES } from '../departures.js';
import { extractGsm8kAnswer, gsm8kCorrect, type Gsm8kRule } from '../gsm8k/answer.js';
import { readGsm8k, type Gsm8kExample } from '../gsm8k/data.js';
import { blankLineTokenIds, gsm8kCutAnswer, gsm8kMaxNewTokens, gsm8kPromptIds, type Gsm8kTemplate } from '../gsm8k/prompt.js';
import { GSM8K_COT_EXEMPLARS } from '../gsm8k/exemplars.js';
import type { PredictionRecord } from '../predictions.js';
import type { EvalTask } from './eval-run.js';
import type { EvalManifest } from './manifest.js';
import { runBenchmark, type EvalRunOptions, type EvalRunResult } from './run-benchmark.js';
import { outputTimes } from './session.js';
import { summaryBase, type SummaryBase } from './summary.js';

export const GSM8K_PROTOCOL = 'commvq protocol (not a published harness): 8-shot CoT (Wei et al.), greedy, final-number exact match';

export interface Gsm8kRunOptions extends EvalRunOptions {
  /** test.jsonl or a Parquet file of question/answer records */
  data: string;
  /** default fewshot */
  template?: Gsm8kTemplate;
  /** exemplars before each question (default 8) */
  shots?: number;
  /** default 256 (fewshot) or 512 (chat) */
  maxNewTokens?: number;
}

export interface Gsm8kSummary extends SummaryBase {
  protocol: string;
  /** percent of the predictions present whose final number equals the gold one, null when none */
  accuracy: number | null;
  correct: number;
  /** how each prediction's number was found */
  extraction: Record<Gsm8kRule, number>;
}

export async function runGsm8k(o: Gsm8kRunOptions): Promise<EvalRunResult<Gsm8kSummary>> {
  const examples = await readGsm8k(o.data); // bad data is found before the model loads
  const template = o.template ?? 'fewshot';
  const shots = o.shots ?? GSM8K_COT_EXEMPLARS.length;
  const maxNewTokens = o.maxNewTokens ?? gsm8kMaxNewTokens(template);
  return runBenchmark(o, {
    benchmark: 'gsm8k',
    dataDir: o.data,
    summarize: gsm8kSummary,
    prepare: (session) => {
      const tok = session.loaded.tokenizer;
      gsm8kPromptIds(tok, 'check', { template, shots }); // a chat template that is missing is refused before the run folder is made
      const stops = template === 'fewshot' ? blankLineTokenIds(tok, session.loaded.config.vocabSize) : [];
      const eosTokenIds = [...new Set([...session.loaded.eosTokenIds, session.tokenizerEosTokenId, ...stops])];
      const task: EvalTask<Gsm8kExample> = {
        name: 'gsm8k',
        examples: () => examples,
        predict: (ex) => {
          const ids = gsm8kPromptIds(tok, ex.question, { template, shots });
          const out = session.generate(ids, { maxNewTokens, eosTokenIds });
          const pred = gsm8kCutAnswer(out.text, template);
          const { value, rule } = extractGsm8kAnswer(pred);
          const record: PredictionRecord = { id: ex.id, index: ex.index, task: 'gsm8k', pred, extracted: value, rule, gold: ex.gold, prompt_tokens: ids.length, new_tokens: out.outputIds.length, stop: out.stopReason };
          return { record, promptTokens: ids.length, newTokens: out.outputIds.length, times: outputTimes(out) };
        },
      };
      return {
        tasks: [task],
        protocol: { label: GSM8K_PROTOCOL, template, shots, max_new_tokens: maxNewTokens, eos_token_ids: eosTokenIds },
        settings: { examples: examples.length },
        departures: EVAL_DEPARTURES.gsm8k,
      };
    },
  });
}

/** Accuracy of the predictions present, each rescored from its text (so a change of extraction rules rescores a run). */
export function gsm8kSummary(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): Gsm8kSummary {
  const extraction: Record<Gsm8kRule, number> = { hashes: 0, 'answer-is': 0, 'last-number': 0, none: 0 };
  let correct = 0;
  for (const r of records) {
    const { value, rule } = extractGsm8kAnswer(r.pred);
    extraction[rule]++;
    if (gsm8kCorrect(value, String(r.gold))) correct++;
  }
  const accuracy = records.length === 0 ? null : Math.round((10000 * correct) / records.length) / 100;
  return { ...summaryBase(manifest, records, planned), protocol: GSM8K_PROTOCOL, accuracy, correct, extraction };
}
