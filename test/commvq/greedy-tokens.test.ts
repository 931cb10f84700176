/**
 * Greedy tokens of the tiny-llama fixture under each cache setting, pinned: a change to how the CommVQ cache is built
 * (its policy, its stores) must leave what it generates as it was. The golden file was written by this same test
 * on the commit before the cache became one policy over two stores (b14e516), on the CPU.
 *
 * The codebooks are seeded random ones (R = 3 stages, 1- or 2-bit value compressors), so the text is noise; what is
 * pinned is the arithmetic: the window, the flush rule, the strict block walk, chunked prompts, sinks, and sampled
 * value codes all reach the tokens within a few steps.
 *
 * COMMVQ_GREEDY_WRITE=FILE writes the tokens instead of comparing them, and COMMVQ_GREEDY_DEVICE=cuda runs them on
 * a GPU (the device store): a GPU session records them on two commits and compares the files.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createBackend } from '../../src/core/backend/create-backend.js';
import { createCommvqCache } from '../../src/core/commvq/load-commvq.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { randomBooks } from '../helpers/commvq-books.js';
import { fixtureDir, FixtureReference, haveFixture } from '../helpers/fixtures.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'greedy-tokens.json');
const device = process.env.COMMVQ_GREEDY_DEVICE ?? 'cpu';
const write = process.env.COMMVQ_GREEDY_WRITE;

interface Setting {
  bits?: 1 | 2;
  prefill?: 'faithful' | 'strict';
  window?: number;
  sinks?: number;
  chunk?: number;
  gumbel?: number;
}

const SETTINGS: Record<string, Setting | null> = {
  dense: null,
  'faithful W16': { prefill: 'faithful', window: 16 },
  'strict W16': { prefill: 'strict', window: 16 },
  'strict W16, chunks of 24': { prefill: 'strict', window: 16, chunk: 24 },
  'strict W16, 4 sinks': { prefill: 'strict', window: 16, sinks: 4 },
  'faithful W16, 4 sinks': { prefill: 'faithful', window: 16, sinks: 4 },
  'strict W16, Gumbel seed 7': { prefill: 'strict', window: 16, gumbel: 7 },
  'faithful W128, 2-bit values': { prefill: 'faithful', bits: 2 },
  'strict W32, 2-bit values, chunks of 50': { prefill: 'strict', window: 32, bits: 2, chunk: 50 },
};

// the golden tokens are the CPU's; on a GPU the test only records (bf16 activations give other near-ties)
describe.skipIf(!haveFixture('tiny-llama') || (device !== 'cpu' && !write))('greedy tokens of tiny-llama under each cache', async () => {
  const backend = await createBackend(device);
  const { model, tokenizer } = loadModel(fixtureDir('tiny-llama'), { backend });
  const prompt = tokenizer.encode(new FixtureReference('tiny-llama').prompts[1]!).slice(0, 100);
  const steps = 40;
  const tokens = (setting: Setting | null): number[] => {
    const capacity = prompt.length + steps;
    const cache = setting
      ? createCommvqCache(model, randomBooks(model, setting.bits ?? 1), {
          capacity, prefill: setting.prefill, window: setting.window, sinks: setting.sinks,
          valueEncoding: setting.gumbel === undefined ? 'argmax' : { gumbelSeed: setting.gumbel },
        })
      : model.createDenseCache(capacity);
    try {
      return generateGreedy(model, prompt, { maxNewTokens: steps, cache, prefillChunk: setting?.chunk }).outputIds;
    } finally {
      cache.dispose();
    }
  };

  if (write) {
    it(`writes the tokens of every setting to ${write}`, () => {
      const out = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, tokens(s)]));
      const lines = Object.entries(out).map(([name, ids]) => `    ${JSON.stringify(name)}: ${JSON.stringify(ids).replaceAll(",", ", ")}`);
      writeFileSync(write, `{\n  "device": "${backend.device}", "prompt": ${prompt.length}, "steps": ${steps},\n  "tokens": {\n${lines.join(',\n')}\n  }\n}\n`);
    });
    return;
  }
  const golden = existsSync(GOLDEN) ? (JSON.parse(readFileSync(GOLDEN, 'utf8')) as { tokens: Record<string, number[]> }).tokens : {};
  it.each(Object.keys(SETTINGS))('%s', (name) => {
    expect(golden[name], `${GOLDEN} has no tokens for ${name}`).toBeDefined();
    expect(tokens(SETTINGS[name]!)).toEqual(golden[name]);
  });
});
