/**
 * Which caches and codebooks a measure-memory run uses, and its model config: codebook pairs, run folders, random
 * codebooks with --random-weights, and one-line errors for what is missing.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkContexts, readMemoryModelConfig, resolveCacheSettings } from '../../src/core/memory/measure-memory.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-mem-settings-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const touch = (path: string) => writeFileSync(path, '');
const run = join(work, 'run');
mkdirSync(run);
touch(join(run, 'key-codebook-em-1bit.arrow'));
touch(join(run, 'value-codebook-1bit.arrow'));
touch(join(run, 'key-codebook-e2e-2bit.arrow'));

describe('measure-memory cache settings', () => {
  it('measures dense alone without codebooks, and random CommVQ codebooks with --random-weights', () => {
    expect(resolveCacheSettings({ caches: ['dense'], bits: [1], randomWeights: false })).toEqual([{ cache: 'dense' }]);
    expect(resolveCacheSettings({ caches: ['dense', 'commvq'], bits: [1, 2], randomWeights: true })).toEqual([{ cache: 'dense' }, { cache: 'commvq', bits: 1 }, { cache: 'commvq', bits: 2 }]);
  });

  it('takes one codebook pair for one bit width, and every bit width from a run folder', () => {
    const key = join(run, 'key-codebook-em-1bit.arrow');
    const value = join(run, 'value-codebook-1bit.arrow');
    expect(resolveCacheSettings({ caches: ['commvq'], bits: [1], randomWeights: false, keyCodebook: key, valueCodebook: value })).toEqual([{ cache: 'commvq', bits: 1, keyCodebook: key, valueCodebook: value }]);
    expect(resolveCacheSettings({ caches: ['commvq'], bits: [1], randomWeights: false, run })).toEqual([{ cache: 'commvq', bits: 1, keyCodebook: key, valueCodebook: value }]);
    expect(() => resolveCacheSettings({ caches: ['commvq'], bits: [1, 2], randomWeights: false, keyCodebook: key, valueCodebook: value })).toThrow(/one --key-codebook\/--value-codebook pair is one bit width/);
  });

  it('names what is missing', () => {
    const o = { caches: ['commvq' as const], bits: [2 as const], randomWeights: false };
    expect(() => resolveCacheSettings(o)).toThrow('--cache commvq needs codebooks: --key-codebook and --value-codebook, or --run DIR');
    expect(() => resolveCacheSettings({ ...o, run })).toThrow(`${run}: no 2-bit value codebook (value-codebook-2bit.arrow)`); // the e2e key was found
    expect(() => resolveCacheSettings({ ...o, bits: [1, 2], run: join(work, 'none') })).toThrow(/none: run folder not found/);
    expect(() => resolveCacheSettings({ ...o, keyCodebook: 'k.arrow' })).toThrow('--key-codebook and --value-codebook go together');
    expect(() => resolveCacheSettings({ ...o, keyCodebook: join(work, 'k.arrow'), valueCodebook: join(work, 'v.arrow') })).toThrow(/k\.arrow: codebook not found/);
  });

  it('reads the config of --random-weights (a file or a folder) and --model, and refuses contexts past max_position_embeddings', () => {
    const llama = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });
    expect(llama.name).toBe('llama-3.1-8b');
    expect(() => checkContexts([131072], llama.config, llama.source)).not.toThrow();
    expect(() => checkContexts([8192, 131073], llama.config, llama.source)).toThrow(/--context 131073: 131073 tokens is beyond the model's limit of 131072/);
    expect(() => readMemoryModelConfig({ randomWeights: join(work, 'nope.json') })).toThrow(/nope\.json: model config not found/);
    expect(() => readMemoryModelConfig({ model: join(work, 'nope') })).toThrow(/nope: model folder not found/);
    expect(() => readMemoryModelConfig({ model: run })).toThrow(/run\/config\.json: model config not found/);
  });
});
