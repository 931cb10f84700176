/**
 * `--cache` and the run identity: the cache spec parser and factory (dense today; each new kind is one case), and
 * the difference finder that names why a folder holds another run.
 */
import { describe, expect, it } from 'vitest';
import { CACHE_FLAG_HELP, describeCache, openCacheFactory, parseCacheChoice, parseCacheSpec } from '../../src/core/eval/run/cache-choice.js';
import { firstDifference } from '../../src/core/eval/run/manifest.js';
import { EvalSession } from '../../src/core/eval/run/session.js';
import { cpu, demoModel, tempRoot } from './helpers.js';

const root = tempRoot('cache-choice');

describe('--cache', () => {
  it('parses KIND[:key=value,...]', () => {
    expect(parseCacheSpec('commvq:bits=2,prefill=strict')).toEqual({ kind: 'commvq', options: { bits: '2', prefill: 'strict' } });
    expect(parseCacheSpec('dense')).toEqual({ kind: 'dense', options: {} });
    expect(() => parseCacheSpec('commvq:bits')).toThrow(/--cache commvq:bits: 'bits' is not key=value/);
    expect(parseCacheChoice('dense')).toEqual({ kind: 'dense' });
    expect(() => parseCacheChoice('dense:bits=2')).toThrow(/--cache dense takes only chunk=N \(got bits\)/);
    expect(() => parseCacheChoice('kivi')).toThrow(/unknown cache 'kivi'/);
    expect(CACHE_FLAG_HELP).toMatch(/dense/);
  });

  it('the dense factory makes empty caches of the asked capacity and describes them for the manifest', () => {
    const session = EvalSession.open({ modelDir: demoModel(root), backend: cpu, cache: { kind: 'dense' } });
    try {
      const model = session.loaded.model;
      expect(describeCache({ kind: 'dense' }, model)).toEqual({ mode: 'dense', label: 'dense', bits: 32, kv_dtype: 'f32', prefill: 'exact', codebooks: null, value_encoding: null, seed: null });
      const factory = openCacheFactory(model, { kind: 'dense' });
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

  it('chunk=N runs prompts N tokens per forward: the same outputs, recorded in the manifest only when set', () => {
    expect(parseCacheChoice('dense:chunk=5')).toEqual({ kind: 'dense', chunk: 5 });
    expect(parseCacheChoice('commvq:key=k,value=v,prefill=strict,chunk=4096')).toMatchObject({ kind: 'commvq', prefill: 'strict', chunk: 4096 });
    expect(() => parseCacheChoice('commvq:key=k,value=v,chunk=4096')).toThrow(/chunk needs prefill=strict/);
    for (const bad of ['0', '2.5', 'x']) expect(() => parseCacheChoice(`dense:chunk=${bad}`)).toThrow(new RegExp(`chunk must be a whole number of tokens ≥ 1, not ${bad.replace('.', '\\.')}`));
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

  it('firstDifference names the first differing path', () => {
    expect(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 2] } })).toBeUndefined();
    expect(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] } })).toEqual({ path: 'b.c.1', a: 2, b: 3 });
    expect(firstDifference({ cache: { bits: 32 } }, { cache: {} })).toEqual({ path: 'cache.bits', a: 32, b: undefined });
  });
});
