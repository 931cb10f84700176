/**
 * generateGreedy's minNewTokens (transformers' min_length, which LongBench's samsum sets to prompt + 1): the EOS ids
 * cannot be chosen before that many new tokens, the next most likely token is taken instead; afterwards, and
 * without the option, decoding is unchanged. On the demo model, CPU.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/core/backend/cpu/cpu-backend.js';
import { writeDemoModel } from '../../../src/core/model/demo-model.js';
import { argmaxExcept, generateGreedy } from '../../../src/core/model/generate.js';
import { loadModel } from '../../../src/core/model/load-model.js';

const dir = mkdtempSync(join(tmpdir(), 'commvq-minnew-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeDemoModel(dir);
const { model, tokenizer } = loadModel(dir, { backend: new CpuBackend() });
const prompt = tokenizer.encode('The pass key is 71432. Remember it.');

/** The logits of the next token after `ids`, on a fresh cache. */
function nextLogits(ids: number[]): Float32Array {
  const cache = model.createDenseCache(ids.length);
  const logits = model.forward(Int32Array.from(ids), cache, { logits: 'last' });
  const out = model.backend.toFloat32(logits);
  logits.dispose();
  cache.dispose();
  return out;
}

describe('minNewTokens', () => {
  const free = generateGreedy(model, prompt, { maxNewTokens: 6 }).outputIds;

  it('without it (or at 0) decoding is unchanged', () => {
    expect(generateGreedy(model, prompt, { maxNewTokens: 6, minNewTokens: 0 }).outputIds).toEqual(free);
    // a min length with no EOS ids has nothing to mask
    expect(generateGreedy(model, prompt, { maxNewTokens: 6, minNewTokens: 3 }).outputIds).toEqual(free);
  });

  it('an EOS id that greedy would pick first is masked on the first step only', () => {
    const eos = free[0]!;
    const stopped = generateGreedy(model, prompt, { maxNewTokens: 6, eosTokenIds: [eos] });
    expect(stopped.outputIds).toEqual([eos]);
    expect(stopped.stopReason).toBe('eos');

    const r = generateGreedy(model, prompt, { maxNewTokens: 6, eosTokenIds: [eos], minNewTokens: 1 });
    const runnerUp = argmaxExcept(nextLogits(prompt), new Set([eos]));
    expect(runnerUp).not.toBe(eos);
    expect(r.outputIds[0]).toBe(runnerUp);
    // from the second step on, the EOS id may end the answer again
    const second = argmaxExcept(nextLogits([...prompt, runnerUp]), new Set());
    expect(r.outputIds[1]).toBe(second);
    if (second === eos) expect(r.stopReason).toBe('eos');
  });

  it('masks every EOS id for the first N steps', () => {
    const banned = [free[0]!, free[1]!];
    const r = generateGreedy(model, prompt, { maxNewTokens: 4, eosTokenIds: banned, minNewTokens: 4 });
    expect(r.outputIds.length).toBe(4);
    expect(r.outputIds.some((id) => banned.includes(id))).toBe(false);
  });

  it('argmaxExcept: first index on ties, banned and NaN skipped', () => {
    expect(argmaxExcept(Float32Array.of(1, 5, 3), new Set([1]))).toBe(2);
    expect(argmaxExcept(Float32Array.of(2, 7, 7), new Set())).toBe(1);
    expect(argmaxExcept(Float32Array.of(NaN, 1, 0), new Set())).toBe(1);
  });
});
