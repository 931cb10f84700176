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
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { createCommvqCache, type CommvqCodebooks } from '../../src/core/commvq/load-commvq.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import type { LlamaModel } from '../../src/core/model/llama.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';
import { compressorShape, initCompressor, type ValueCompressorParams } from '../../src/core/values/value-compressor.js';
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

/** Seeded random codebooks for the model: θ of 3 stages per layer, value compressors of `bits` (host tensors). */
function randomBooks(model: LlamaModel, bits: 1 | 2): CommvqCodebooks {
  const cpu = new CpuBackend();
  const { numLayers, kvHeads, headDim } = model.cacheShape;
  const D = kvHeads * headDim;
  const rng = new SeededRandom(100 + bits);
  const valueShape = compressorShape(bits, D);
  const keys = new Map<number, LayerKeyCodebook>();
  const values = new Map<number, { params: ValueCompressorParams; scale: Tensor }>();
  for (let l = 0; l < numLayers; l++) {
    const theta = Float32Array.from({ length: 3 * kvHeads * 128 * (headDim / 2) }, () => 0.05 * rng.normal());
    keys.set(l, new LayerKeyCodebook({ residuals: 3, groups: kvHeads, halfSize: 64, pairs: headDim / 2 }, theta));
    values.set(l, { params: initCompressor(cpu, valueShape, 7 + l), scale: cpu.fromArray(Float32Array.from({ length: D }, () => 0.5 + rng.uniform()), [D], 'f32') });
  }
  return { keys, values, valueShape, keyPath: '(random)', valuePath: '(random)', bits: { key: bits, value: bits } };
}

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
