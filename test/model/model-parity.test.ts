/**
 * The CPU engine against transformers (fp32, eager) on the reference fixtures: tokenization, per-layer keys and
 * values, logits at every position, and greedy continuations.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { compareArrays } from '../helpers/compare.js';
import { FIXTURE_MODELS, FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

describe.skipIf(!haveFixtures).each(FIXTURE_MODELS)('%s matches transformers', (name) => {
  const backend = new CpuBackend();
  const loaded = haveFixtures ? loadModel(fixtureDir(name), { backend }) : undefined!;
  const ref = haveFixtures ? new FixtureReference(name) : undefined!;

  for (const p of [0, 1]) {
    it(`prompt ${p}: tokenizer ids equal ids.${p}`, () => {
      expect(loaded.tokenizer.encode(ref.prompts[p]!)).toEqual(ref.ids(`ids.${p}`));
    });

    it(`prompt ${p}: logits within 1e-3 and pre-RoPE k, post-RoPE k, v within 1e-4 at every layer`, () => {
      const ids = Int32Array.from(ref.ids(`ids.${p}`));
      const observed: { kPre: Float32Array; k: Float32Array; v: Float32Array }[] = [];
      const cache = loaded.model.createDenseCache(ids.length);
      const logits = loaded.model.forward(ids, cache, {
        observe: (layer, kv) => {
          observed[layer] = { kPre: backend.toFloat32(kv.kPre), k: backend.toFloat32(kv.k), v: backend.toFloat32(kv.v) };
        },
      });
      for (let l = 0; l < loaded.config.numLayers; l++) {
        for (const [key, refName] of [['kPre', 'k_pre'], ['k', 'k'], ['v', 'v']] as const) {
          const c = compareArrays(observed[l]![key], ref.f32(`${refName}.${p}.${l}`), 1e-4);
          expect(c.ok, `layer ${l} ${refName}: ${c.report}`).toBe(true);
        }
      }
      const c = compareArrays(backend.toFloat32(logits), ref.f32(`logits.${p}`), 1e-3);
      expect(c.ok, `logits: ${c.report}`).toBe(true);
    });

    it(`prompt ${p}: greedy continuation equals greedy.${p}`, () => {
      const want = ref.ids(`greedy.${p}`);
      const { outputIds } = generateGreedy(loaded.model, ref.ids(`ids.${p}`), { maxNewTokens: want.length });
      expect(outputIds).toEqual(want);
    });
  }
});
