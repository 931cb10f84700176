/**
 * The cache a run records (openCacheFactory's description): the fields eval manifests compare to resume a run, so
 * the same choice must keep giving the same description — whether CommVQ codebooks are named by file or found in a
 * run folder by bit width, or drawn at random with random weights. And the difference finder that names why a folder
 * holds another run.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCacheFactory } from '../../../src/core/cache-factory.js';
import { disposeCodebookValues, randomCodebooks } from '../../../src/core/commvq/random-codebooks.js';
import { firstDifference } from '../../../src/core/eval/run/manifest.js';
import { EvalSession } from '../../../src/core/eval/run/session.js';
import { writeRandomCodebooks } from '../../helpers/codebooks.js';
import { cpu, demoModel, tempRoot } from './helpers.js';

const root = tempRoot('cache-description');

describe('cache descriptions', () => {
  it('the dense factory makes empty caches of the asked capacity and describes them for the manifest', () => {
    const session = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense' } });
    try {
      const model = session.loaded.model;
      const factory = openCacheFactory(model, { kind: 'dense' });
      // the description of runs made before the cache spec (manifest.json of older runs): unchanged
      expect(factory.description).toEqual({ mode: 'dense', label: 'dense', bits: 32, kv_dtype: 'f32', prefill: 'exact', codebooks: null, value_encoding: null, seed: null });
      const cache = factory.make(64);
      expect([cache.length, cache.capacity]).toEqual([0, 64]);
      cache.dispose();
      factory.dispose();
      // a prompt that leaves no room for an answer is refused before any cache is made
      expect(() => session.generate(new Array<number>(8192).fill(65), { maxNewTokens: 4, eosTokenIds: [] })).toThrow(/the prompt is 8192 tokens, which leaves no room/);
    } finally {
      session.dispose();
    }
  });

  it('CommVQ: the same description from files or from a run folder by bit width; gumbel records its seed', () => {
    const session = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense' } });
    try {
      const model = session.loaded.model;
      const run = join(root, 'run');
      const files = writeRandomCodebooks(run, model.config, 1);
      const byFile = openCacheFactory(model, { kind: 'commvq', ...files, prefill: 'strict' }).description;
      expect(byFile).toEqual({
        mode: 'commvq', label: 'commvq-1bit', bits: 1, kv_dtype: 'f32', prefill: 'strict', codebooks: { key: files.key, value: files.value }, value_encoding: 'argmax', seed: null,
      });
      expect(openCacheFactory(model, { kind: 'commvq', bits: 1, run, prefill: 'strict' }).description).toEqual(byFile);
      expect(openCacheFactory(model, { kind: 'commvq', ...files, encoding: 'gumbel' }).description).toMatchObject({ prefill: 'faithful', value_encoding: 'gumbel', seed: 42 });
      expect(openCacheFactory(model, { kind: 'commvq', ...files, encoding: 'gumbel', seed: 7 }).description.seed).toBe(7);
      // the ablations (issue 18) add compress and a label suffix; compress=both is described as before, for resumes
      expect(openCacheFactory(model, { kind: 'commvq', ...files, prefill: 'strict', compress: 'both' }).description).toEqual(byFile);
      expect(openCacheFactory(model, { kind: 'commvq', ...files, prefill: 'strict', compress: 'keys' }).description).toEqual({ ...byFile, label: 'commvq-1bit-keys-only', compress: 'keys' });
      const random = openCacheFactory(model, { kind: 'commvq', bits: 1, compress: 'values' }, { random: true });
      expect(random.description).toMatchObject({ label: 'commvq-1bit-random-values-only', codebooks: null, compress: 'values' });
      random.dispose();
      expect(() => openCacheFactory(model, { kind: 'commvq', ...files, bits: 2 })).toThrow(/key-codebook-em-1bit\.arrow: a 1-bit key codebook, not the 2-bit one the cache asks for/);
    } finally {
      session.dispose();
    }
  });

  it('chunk=N runs prompts N tokens per forward: the same outputs, recorded in the manifest only when set', () => {
    const whole = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense' } });
    const chunked = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense', chunk: 5 } });
    try {
      expect(whole.caches.description).not.toHaveProperty('prefill_chunk');
      expect(chunked.caches.description).toMatchObject({ mode: 'dense', prefill_chunk: 5 });
      const prompt = Array.from({ length: 23 }, (_, i) => 65 + ((7 * i) % 26));
      const g = { maxNewTokens: 6, eosTokenIds: [] };
      expect(chunked.generate(prompt, g).outputIds).toEqual(whole.generate(prompt, g).outputIds);
    } finally {
      whole.dispose();
      chunked.dispose();
    }
  });

  it('random codebooks: commvq of bits alone only with random, described as random, host tensors that run a cache', () => {
    const session = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'commvq', bits: 2 }, randomWeights: true });
    try {
      expect(session.identity.random_weights).toBe(true);
      expect(session.caches.description).toEqual({
        mode: 'commvq', label: 'commvq-2bit-random', bits: 2, kv_dtype: 'f32', prefill: 'faithful', codebooks: null, random_codebooks: true, value_encoding: 'argmax', seed: null,
      });
      const prompt = Array.from({ length: 150 }, (_, i) => 65 + ((7 * i) % 26)); // past one W = 128 block: codes are made and read
      expect(session.generate(prompt, { maxNewTokens: 3, eosTokenIds: [] }).outputIds).toHaveLength(3);

      const model = session.loaded.model;
      expect(() => openCacheFactory(model, { kind: 'commvq', bits: 1 })).toThrow(/cache: commvq needs codebooks: key= and value=, or run= and bits=/);
      // the same draws wherever the compressors are kept; 'host' gives host tensors on any backend
      const here = randomCodebooks(model, 1);
      const host = randomCodebooks(model, 1, { values: 'host' });
      expect(host.keys.get(1)!.theta).toEqual(here.keys.get(1)!.theta);
      expect(host.values.get(1)!.params.w2.device).toBe('cpu');
      expect(cpu.toFloat32(host.values.get(1)!.params.w2)).toEqual(cpu.toFloat32(here.values.get(1)!.params.w2));
      expect(host.keys.get(0)!.shape.residuals).toBe(11); // the standard geometry of 1 bit
      [here, host].forEach(disposeCodebookValues);
    } finally {
      session.dispose();
    }
    const dense = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense' } });
    expect(dense.identity).not.toHaveProperty('random_weights'); // real weights: the identity of older manifests
    dense.dispose();
  });

  it('a missing codebook is refused before the model loads', () => {
    expect(() => EvalSession.open({ modelDir: join(root, 'no-model'), backend: cpu, cache: { kind: 'commvq', key: join(root, 'k.arrow'), value: join(root, 'v.arrow') } })).toThrow(/k\.arrow: key codebook not found/);
  });

  it('firstDifference names the first differing path', () => {
    expect(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 2] } })).toBeUndefined();
    expect(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] } })).toEqual({ path: 'b.c.1', a: 2, b: 3 });
    expect(firstDifference({ cache: { bits: 32 } }, { cache: {} })).toEqual({ path: 'cache.bits', a: 32, b: undefined });
  });
});
