import { join } from 'node:path';
import { createCommvqCache, findRunCodebooks, loadCommvqCodebooks, type CommvqCodebooks } from '../commvq/load-commvq.js';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { generateGreedy } from '../model/generate.js';
import type { LlamaModel } from '../model/llama.js';
import { loadModel } from '../model/load-model.js';
import { disposeWeights } from '../model/weights.js';
import { agreementPromptText } from './demo-corpus.js';
import type { PipelineStage } from './stage.js';

/**
 * How closely greedy decoding on the CommVQ cache follows the dense cache: the same prompt, the same number of new
 * tokens (no EOS stop), token by token. Past the first difference the two continuations see different histories, so
 * `identical` counts positions that agree anyway; `firstDivergence` is the cleaner measure of drift.
 */
export interface AgreementResult {
  bits: number;
  /** key residual stages R of the codebook */
  residuals: number;
  prefill: 'faithful' | 'strict';
  window: number;
  promptTokens: number;
  newTokens: number;
  /** new tokens equal to the dense cache's at the same index */
  identical: number;
  fraction: number;
  /** index of the first new token that differs, null when all agree */
  firstDivergence: number | null;
  /** tokens held as codes at the end (whole windows of W flushed) */
  compressedTokens: number;
  /** storage the caches held at the end: the dense cache's buffers, the CommVQ host cache's codes and exact window */
  cacheBytes: { dense: number; commvq: number };
  outputIds: number[];
}

/**
 * Greedy generation over a CommVQ cache compared with `dense` (the dense cache's greedy tokens for `prompt`).
 *
 *   const dense = generateGreedy(model, prompt, { maxNewTokens: 300 }).outputIds;
 *   greedyAgreement(model, books, prompt, dense, { window: 128, prefill: 'faithful' }).fraction
 */
export function greedyAgreement(model: LlamaModel, books: CommvqCodebooks, prompt: readonly number[], dense: readonly number[], o: { window: number; prefill: 'faithful' | 'strict' }): AgreementResult {
  const cache = createCommvqCache(model, books, { capacity: prompt.length + dense.length, prefill: o.prefill, window: o.window });
  try {
    const out = generateGreedy(model, prompt, { maxNewTokens: dense.length, cache }).outputIds;
    const identical = out.filter((t, i) => t === dense[i]).length;
    const first = out.findIndex((t, i) => t !== dense[i]);
    const denseBytes = model.createDenseCache(prompt.length + dense.length);
    const bytes = { dense: denseBytes.bytes(), commvq: cache.bytes() };
    denseBytes.dispose();
    return {
      bits: books.bits.value,
      residuals: books.keys.get(0)!.shape.residuals,
      prefill: o.prefill,
      window: o.window,
      promptTokens: prompt.length,
      newTokens: out.length,
      identical,
      fraction: identical / Math.max(1, out.length),
      firstDivergence: first < 0 ? null : first,
      compressedTokens: cache.dequantized(0).positions.length,
      cacheBytes: bytes,
      outputIds: out,
    };
  } finally {
    cache.dispose();
  }
}

/** The agreement stage: one dense reference, then every bit width's CommVQ codebooks; RUN_DIR/agreement.json. */
export const agreementStage: PipelineStage = {
  name: 'agreement',
  label: 'greedy agreement',
  async run(ctx) {
    const s = ctx.settings;
    const { model, tokenizer } = loadModel(ctx.modelDir, { backend: ctx.backend, allowNonFinite: ctx.allowNonFinite });
    try {
      const prompt = tokenizer.encode(agreementPromptText(s.agreementPromptTokens * 8)).slice(0, s.agreementPromptTokens);
      if (prompt.length < s.agreementPromptTokens) throw new CommvqError(`the agreement prompt has ${prompt.length} tokens, fewer than the ${s.agreementPromptTokens} asked for`);
      const total = s.bits.length + 1;
      ctx.progress(0, total, '| dense');
      const dense = generateGreedy(model, prompt, { maxNewTokens: s.agreementNewTokens }).outputIds;
      const results: AgreementResult[] = [];
      for (const bits of s.bits) {
        if (ctx.signal?.aborted) break;
        ctx.progress(results.length + 1, total, `| commvq ${bits}-bit`);
        const files = findRunCodebooks(ctx.runDir, bits);
        const books = loadCommvqCodebooks(model, files.key, files.value);
        results.push(greedyAgreement(model, books, prompt, dense, { window: s.window, prefill: 'faithful' }));
      }
      ctx.progress(total, total);
      const path = join(ctx.runDir, 'agreement.json');
      writeFileAtomic(path, [Buffer.from(JSON.stringify({ format: 'commvq.pipeline-agreement', version: 1, prompt_ids: prompt, dense_ids: dense, results }, null, 1) + '\n')]);
      const numbers: Record<string, number | null> = {};
      for (const r of results) {
        numbers[`agreement_${r.bits}bit`] = r.fraction;
        numbers[`first_divergence_${r.bits}bit`] = r.firstDivergence;
        numbers[`compressed_tokens_${r.bits}bit`] = r.compressedTokens;
      }
      const parts = results.map((r) => `${r.bits}-bit ${(100 * r.fraction).toFixed(1)}% identical, first difference at ${r.firstDivergence ?? 'none'}`);
      const flushed = results[0] ? `, ${results[0].compressedTokens / s.window} windows of ${s.window} flushed` : '';
      return {
        headline: `${prompt.length}-token prompt + ${dense.length} greedy tokens${flushed}: ${parts.join('; ')}`,
        files: [path],
        numbers,
        interrupted: results.length < s.bits.length,
      };
    } finally {
      disposeWeights(model.weights);
    }
  },
};
