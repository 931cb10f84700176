/**
 * Weights holding NaN or Inf are refused at load, naming the file, the tensor and a count, unless allowNonFinite; a
 * model loaded anyway whose logits come out non-finite gets a CommvqError from greedy decoding instead of token 0.
 * The poisoned models are copies of the tiny-llama fixture with one element changed.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { CommvqError } from '../../src/core/errors.js';
import { generateGreedy } from '../../src/core/model/generate.js';
import { loadModel } from '../../src/core/model/load-model.js';
import { fixtureDir, haveFixtures } from '../helpers/fixtures.js';
import { poisonedCopy } from '../helpers/model-copies.js';

const DOWN_PROJ = 'model.layers.0.mlp.down_proj.weight'; // every token's hidden state passes through it
const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function poisoned(tensor: string, value: number, o: { bf16?: boolean; at?: number } = {}): string {
  const dir = poisonedCopy(fixtureDir('tiny-llama'), tensor, value, o);
  made.push(dir);
  return dir;
}

/** The error loadModel throws, checked to be one of ours (printed as one line by the CLI). */
function loadError(dir: string): CommvqError {
  try {
    loadModel(dir, { backend: new CpuBackend() });
  } catch (err) {
    expect(err).toBeInstanceOf(CommvqError);
    return err as CommvqError;
  }
  throw new Error(`${dir} loaded`);
}

describe.skipIf(!haveFixtures)('non-finite weights', () => {
  it('f32 NaN: refused with the file, the tensor, the count and the first element', () => {
    const dir = poisoned(DOWN_PROJ, NaN, { at: 7 });
    const err = loadError(dir);
    expect(err.message).toBe(`${join(dir, 'model.safetensors')}: tensor '${DOWN_PROJ}' has 1 NaN/Inf among its ${256 * 768} values (the first at element 7)`);
    expect(err.hint).toMatch(/--allow-nonfinite/);
    expect(err.message).not.toMatch(/\n/);
  });

  it('bf16 +Inf and -Inf, as real checkpoints are stored, are refused too', () => {
    expect(loadError(poisoned('model.norm.weight', Infinity, { bf16: true })).message).toMatch(/tensor 'model\.norm\.weight' has 1 NaN\/Inf among its 256 values/);
    expect(loadError(poisoned('lm_head.weight', -Infinity, { bf16: true, at: 3 })).message).toMatch(/tensor 'lm_head\.weight' .* first at element 3/);
  });

  it('allowNonFinite loads it; greedy decoding then refuses the NaN logits instead of emitting token 0', () => {
    const dir = poisoned(DOWN_PROJ, NaN);
    const { model } = loadModel(dir, { backend: new CpuBackend(), allowNonFinite: true });
    const run = () => generateGreedy(model, [5, 6, 7], { maxNewTokens: 4 });
    expect(run).toThrow(CommvqError);
    expect(run).toThrow(/logits for new token 0 have 512 NaN\/Inf among their 512 values/);
  });

  it('a NaN in an embedding row the prompt never uses loads with allowNonFinite and generates as the clean model does', () => {
    const backend = new CpuBackend();
    const dir = poisoned('model.embed_tokens.weight', NaN, { at: 511 * 256 }); // row 511, the last token id
    const clean = generateGreedy(loadModel(fixtureDir('tiny-llama'), { backend }).model, [5, 6, 7], { maxNewTokens: 4 });
    const dirty = generateGreedy(loadModel(dir, { backend, allowNonFinite: true }).model, [5, 6, 7], { maxNewTokens: 4 });
    expect(dirty.outputIds).toEqual(clean.outputIds);
  });
});
