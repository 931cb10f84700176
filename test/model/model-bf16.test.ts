/**
 * bf16 checkpoints (as real ones are stored) and sharded checkpoints load and run. The bf16 copies are made here
 * from the fp32 fixtures; their outputs are compared with the fp32 reference within bf16 tolerances.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { compareArrays, relativeL2 } from '../helpers/compare.js';
import { FIXTURE_MODELS, FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';
import { bf16Copy, shardedCopy } from '../helpers/model-copies.js';

// bf16 keeps 8 significant bits (eps = 2^-8). Rounding the weights perturbs a layer's outputs by about eps/2 of their
// norm per layer (measured: 0.7·eps after layer 0, 2.4·eps after layer 1, 3·eps at the logits of these 2-layer
// models), so errors are bounded norm-wise: ‖err‖/‖ref‖ ≤ 2·eps·(layer+1) for keys/values, ≤ 4·eps for logits.
// Elementwise bounds would fail on entries near zero, which come from cancelling sums.
const BF16_EPS = 2 ** -8;
// the largest |logit error| seen is 0.125; a greedy token may differ from the fp32 reference only where the two
// candidates' logits are closer than twice that
const NEAR_TIE = 0.25;

describe.skipIf(!haveFixtures).each(FIXTURE_MODELS)('%s with bf16 weights', (name) => {
  const dir = haveFixtures ? bf16Copy(fixtureDir(name)) : '';
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stores the weights as bf16; keys, values and logits stay within bf16 error of the fp32 reference', () => {
    const backend = new CpuBackend();
    const loaded = loadModel(dir, { backend });
    expect(loaded.model.weights.layers[0]!.qProj.dtype).toBe('bf16');
    const ref = new FixtureReference(name);
    for (const p of [0, 1]) {
      const ids = Int32Array.from(ref.ids(`ids.${p}`));
      const logits = loaded.model.forward(ids, loaded.model.createDenseCache(ids.length), {
        observe: (l, t) => {
          for (const [got, refName] of [[t.kPre, 'k_pre'], [t.k, 'k'], [t.v, 'v']] as const) {
            const err = relativeL2(backend.toFloat32(got), ref.f32(`${refName}.${p}.${l}`));
            expect(err, `prompt ${p} layer ${l} ${refName}`).toBeLessThan(2 * BF16_EPS * (l + 1));
          }
        },
      });
      expect(relativeL2(backend.toFloat32(logits), ref.f32(`logits.${p}`)), `prompt ${p} logits`).toBeLessThan(4 * BF16_EPS);
    }
  });

  it('follows the greedy reference except at near-ties, and decodes incrementally as it scores in one pass', () => {
    const backend = new CpuBackend();
    const { model } = loadModel(dir, { backend });
    const ref = new FixtureReference(name);
    for (const p of [0, 1]) {
      const prompt = ref.ids(`ids.${p}`);
      const want = ref.ids(`greedy.${p}`);
      // teacher-force prompt + reference continuation: row prompt.length − 1 + i predicts want[i]
      const all = Int32Array.from([...prompt, ...want]);
      const logits = backend.toFloat32(model.forward(all, model.createDenseCache(all.length)));
      const V = model.config.vocabSize;
      want.forEach((token, i) => {
        const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
        const best = row.reduce((b, v, j) => (v > row[b]! ? j : b), 0);
        expect(row[best]! - row[token]!, `prompt ${p} token ${i}: ours ${best}, reference ${token}`).toBeLessThanOrEqual(NEAR_TIE);
      });
      // generating token by token through the cache picks the same tokens as one full pass would
      const { outputIds } = generateGreedy(model, prompt, { maxNewTokens: want.length });
      const again = backend.toFloat32(model.forward(Int32Array.from([...prompt, ...outputIds]), model.createDenseCache(prompt.length + want.length)));
      outputIds.forEach((token, i) => {
        const row = again.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
        expect(row.reduce((b, v, j) => (v > row[b]! ? j : b), 0), `prompt ${p} step ${i}`).toBe(token);
      });
    }
  });
});

describe.skipIf(!haveFixtures)('sharded checkpoints', () => {
  it('loads model.safetensors.index.json shards and gives the same logits as the single file', () => {
    const dir = shardedCopy(fixtureDir('tiny-qwen2'), 3);
    try {
      const backend = new CpuBackend();
      const ref = new FixtureReference('tiny-qwen2');
      const ids = Int32Array.from(ref.ids('ids.0'));
      const sharded = loadModel(dir, { backend }).model;
      const c = compareArrays(backend.toFloat32(sharded.forward(ids, sharded.createDenseCache(ids.length))), ref.f32('logits.0'), 1e-3);
      expect(c.ok, c.report).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
