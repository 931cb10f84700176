/**
 * generateGreedy's prefillChunk: a prompt run in chunks continues exactly as in one forward (the cache sees the same
 * tokens at the same positions; on the CPU every row is computed alike), and a chunk size that is not a whole
 * number of tokens is refused. On the demo model, CPU. CommVQ strict prompts in chunks: test/commvq/commvq-pipeline.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CommvqError } from '../../src/core/errors.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';

const dir = mkdtempSync(join(tmpdir(), 'commvq-chunk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeDemoModel(dir);
const { model, tokenizer } = loadModel(dir, { backend: new CpuBackend() });
const prompt = tokenizer.encode('The pass key is 71432. Remember it. The grass is green and the sky is blue.');

describe('generateGreedy with prefillChunk', () => {
  const whole = generateGreedy(model, prompt, { maxNewTokens: 8 }).outputIds;

  it.each([1, 5, 16, 1000])('chunks of %i tokens continue the prompt as one forward does', (chunk) => {
    expect(prompt.length).toBeGreaterThan(16);
    expect(generateGreedy(model, prompt, { maxNewTokens: 8, prefillChunk: chunk }).outputIds).toEqual(whole);
  });

  it('refuses a chunk that is not a whole number of tokens ≥ 1', () => {
    for (const chunk of [0, 2.5, -4]) expect(() => generateGreedy(model, prompt, { maxNewTokens: 2, prefillChunk: chunk })).toThrow(CommvqError);
  });
});
