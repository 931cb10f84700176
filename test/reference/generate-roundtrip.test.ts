/**
 * Done-when of issue 19: generation on the fixture with codebooks that went out to the reference's format and came
 * back equals generation with the codebooks before export. The codebooks are this engine's (seeded random θ with
 * N_h = 64, f32 value compressors), exported with the base model linked in, imported from that checkpoint.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { createCommvqCache, loadCommvqCodebooks } from '../../src/core/commvq/load-commvq.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { exportReference } from '../../src/core/reference/export-reference.js';
import { importReference } from '../../src/core/reference/import-reference.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';
import { fixtureDir, FixtureReference, haveFixture } from '../helpers/fixtures.js';
import { expectSameBits } from '../helpers/same-bits.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-refgen-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!haveFixture('tiny-llama'))('generation after export → import', () => {
  it('gives the tokens the codebooks gave before export', async () => {
    const dir = fixtureDir('tiny-llama');
    const { model, tokenizer, config } = loadModel(dir, { backend: new CpuBackend() });
    const before = writeRandomCodebooks(join(work, 'trained'), config, 1, 2);
    const exported = await exportReference({ run: join(work, 'trained'), out: join(work, 'export'), model: dir });
    expect(exported).toMatchObject({ valueDtype: 'F32', keyFiles: 2 });
    expect(exported.modelTensors).toBeGreaterThan(10);
    const after = importReference({ values: exported.valuesDir, keys: exported.keysDir, out: join(work, 'imported'), checkCentres: true });
    expect(after.modelTensors).toBe(exported.modelTensors);
    for (let l = 0; l < 2; l++) expectSameBits(readKeyCodebook(after.keyCodebook).layers.get(l)!.theta, readKeyCodebook(before.key).layers.get(l)!.theta, `θ of layer ${l}`);

    const prompt = tokenizer.encode(new FixtureReference('tiny-llama').prompts[1]!).slice(0, 48);
    const tokens = (paths: { key: string; value: string }) => {
      const cache = createCommvqCache(model, loadCommvqCodebooks(model, paths.key, paths.value), { capacity: prompt.length + 16, prefill: 'strict', window: 16 });
      try {
        return generateGreedy(model, prompt, { maxNewTokens: 16, cache }).outputIds;
      } finally {
        cache.dispose();
      }
    };
    const want = tokens(before);
    expect(want).toHaveLength(16);
    expect(tokens({ key: after.keyCodebook, value: after.valueCodebook })).toEqual(want);
  });
});
