/**
 * On the tiny-llama fixture (CPU), the prompt's logits through int4, int2 and fp8 equal dense's bit for bit: a prompt
 * attends over its own keys and values exact (HF's QuantizedCache returns them unquantized), whatever it stores.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { openCacheFactory } from '../../src/core/cache-factory.js';
import type { CacheSpec } from '../../src/core/cache-spec.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { FixtureReference, fixtureDir, haveFixture } from '../helpers/fixtures.js';

describe.skipIf(!haveFixture('tiny-llama'))('the prompt through a peer cache', () => {
  it('gives dense’s logits exactly', () => {
    const backend = new CpuBackend();
    const { model } = loadModel(fixtureDir('tiny-llama'), { backend });
    const ids = Int32Array.from(new FixtureReference('tiny-llama').ids('ids.0'));
    const logits = (spec: CacheSpec) => backend.toFloat32(model.forward(ids, openCacheFactory(model, spec).make(ids.length)));
    const dense = logits({ kind: 'dense' });
    for (const spec of [{ kind: 'int4' }, { kind: 'int2', group: 32 }, { kind: 'fp8' }] as const) expect(logits(spec), spec.kind).toEqual(dense);
  });
});
