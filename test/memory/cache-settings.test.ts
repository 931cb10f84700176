/**
 * Which caches and codebooks a measure-memory run uses (memoryCacheSettings), and its model config: run folders by
 * bit width, codebook pairs whose bit width is read from the files, random codebooks with random weights, the
 * CommVQ prefill mode (faithful by default, strict when asked, both as two caches), and one-line errors for what is
 * missing or not taken.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kiviCacheBytes } from '../../src/core/memory/cache-accounting.js';
import { accountPoint, cacheGeometry, cacheLabel, checkContexts, gridPoints, memoryCacheSettings, prefillModeOf, readMemoryModelConfig } from '../../src/core/memory/measure-memory.js';
import { DEMO_CONFIG } from '../../src/core/model/demo-model.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-mem-settings-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const touch = (path: string) => writeFileSync(path, '');
const run = join(work, 'run');
mkdirSync(run);
touch(join(run, 'key-codebook-em-1bit.arrow'));
touch(join(run, 'value-codebook-1bit.arrow'));
touch(join(run, 'key-codebook-e2e-2bit.arrow'));
const files = writeRandomCodebooks(join(work, 'real'), parseModelConfig(DEMO_CONFIG, 'demo'), 2);

describe('measure-memory cache settings', () => {
  it('takes the peer caches with their defaults filled in, labelled as their factories label them', async () => {
    const settings = await memoryCacheSettings([{ kind: 'int4' }, { kind: 'int2', group: 32, residual: 64 }, { kind: 'fp8' }], { randomWeights: false });
    expect(settings).toEqual([{ cache: 'int4', group: 64, residual: 128 }, { cache: 'int2', group: 32, residual: 64 }, { cache: 'fp8' }]);
    expect(settings.map(cacheLabel)).toEqual(['int4-g64', 'int2-g32-r64', 'fp8']);
    expect(settings.map(prefillModeOf)).toEqual([null, null, null]);
    await expect(memoryCacheSettings([{ kind: 'int4' }, { kind: 'int4', group: 64 }], { randomWeights: false })).rejects.toThrow(/int4-g64 is given twice/);
  });

  it('measures dense alone without codebooks, and random CommVQ codebooks with random weights', async () => {
    expect(await memoryCacheSettings([{ kind: 'dense' }], { randomWeights: false })).toEqual([{ cache: 'dense' }]);
    expect(await memoryCacheSettings([{ kind: 'dense' }, { kind: 'commvq', bits: 1 }, { kind: 'commvq', bits: 2 }], { randomWeights: true })).toEqual([
      { cache: 'dense' }, { cache: 'commvq', bits: 1, prefillMode: 'faithful' }, { cache: 'commvq', bits: 2, prefillMode: 'faithful' },
    ]);
  });

  it('finds a run folder’s codebooks by bit width, and reads the bit width of a codebook pair from its files', async () => {
    expect(await memoryCacheSettings([{ kind: 'commvq', bits: 1, run }], { randomWeights: false })).toEqual([
      { cache: 'commvq', bits: 1, prefillMode: 'faithful', keyCodebook: join(run, 'key-codebook-em-1bit.arrow'), valueCodebook: join(run, 'value-codebook-1bit.arrow') },
    ]);
    expect(await memoryCacheSettings([{ kind: 'commvq', ...files }], { randomWeights: true })).toEqual([{ cache: 'commvq', bits: 2, prefillMode: 'faithful', keyCodebook: files.key, valueCodebook: files.value }]);
    await expect(memoryCacheSettings([{ kind: 'commvq', ...files, bits: 1 }], { randomWeights: false })).rejects.toThrow(/value-codebook-2bit\.arrow: a 2-bit value codebook, not the 1-bit one the cache asks for/);
  });

  it('keeps each CommVQ cache’s prefill mode (faithful by default): both modes of one width are two caches', async () => {
    const caches = await memoryCacheSettings(
      [{ kind: 'commvq', bits: 1, run }, { kind: 'commvq', bits: 1, run, prefill: 'strict' }, { kind: 'commvq', ...files, prefill: 'faithful' }],
      { randomWeights: false },
    );
    expect(caches.map((c) => [c.bits, c.prefillMode])).toEqual([[1, 'faithful'], [1, 'strict'], [2, 'faithful']]);
    expect(caches[1]!.keyCodebook).toBe(join(run, 'key-codebook-em-1bit.arrow'));
    const random = await memoryCacheSettings([{ kind: 'commvq', bits: 1, prefill: 'strict' }, { kind: 'commvq', bits: 1, prefill: 'faithful' }], { randomWeights: true });
    expect(random).toEqual([{ cache: 'commvq', bits: 1, prefillMode: 'strict' }, { cache: 'commvq', bits: 1, prefillMode: 'faithful' }]);
  });

  it('refuses the same cache twice (the default mode named or not), and the modes of one width on different codebooks', async () => {
    const twice = (specs: Parameters<typeof memoryCacheSettings>[0]) => memoryCacheSettings(specs, { randomWeights: true });
    await expect(twice([{ kind: 'commvq', bits: 1 }, { kind: 'commvq', bits: 1 }])).rejects.toThrow('cache: commvq-1bit is given twice');
    await expect(twice([{ kind: 'commvq', bits: 1 }, { kind: 'commvq', bits: 1, prefill: 'faithful' }])).rejects.toThrow('cache: commvq-1bit is given twice');
    await expect(twice([{ kind: 'commvq', bits: 2, prefill: 'strict' }, { kind: 'commvq', bits: 2, prefill: 'strict' }])).rejects.toThrow('cache: commvq-2bit-strict is given twice');
    await expect(twice([{ kind: 'commvq', ...files }, { kind: 'commvq', bits: 2, prefill: 'strict' }])).rejects.toThrow(
      'cache: commvq-2bit and commvq-2bit-strict have different codebooks: give both modes of a bit width the same ones',
    );
  });

  it('names what is missing, and what measure-memory does not take', async () => {
    const settings = (spec: Parameters<typeof memoryCacheSettings>[0][number]) => memoryCacheSettings([spec], { randomWeights: false });
    await expect(settings({ kind: 'commvq', bits: 2 })).rejects.toThrow('cache: commvq needs codebooks: key= and value=, or run= and bits=');
    await expect(settings({ kind: 'commvq', bits: 2, run })).rejects.toThrow(`${run}: no 2-bit value codebook (value-codebook-2bit.arrow)`); // the e2e key was found
    await expect(settings({ kind: 'commvq', bits: 1, run: join(work, 'none') })).rejects.toThrow(/none: run folder not found/);
    await expect(settings({ kind: 'commvq', key: join(work, 'k.arrow'), value: files.value })).rejects.toThrow(/k\.arrow: key codebook not found/);
    const notTaken = 'cache: measure-memory runs every prompt as generate does (layer by layer, in the model’s row chunks), with argmax value codes: encoding=, seed= and chunk= are not taken (prefill= is)';
    await expect(settings({ kind: 'commvq', bits: 1, run, encoding: 'gumbel' })).rejects.toThrow(notTaken);
    await expect(settings({ kind: 'commvq', bits: 1, run, prefill: 'strict', seed: 7 })).rejects.toThrow(notTaken);
    await expect(settings({ kind: 'commvq', bits: 1, run, prefill: 'strict', chunk: 4096 })).rejects.toThrow(notTaken);
    await expect(settings({ kind: 'dense', chunk: 8 })).rejects.toThrow(notTaken);
  });

  it('reads the config of random weights (a file or a folder) and of a model, and refuses contexts past max_position_embeddings', () => {
    const llama = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });
    expect(llama.name).toBe('llama-3.1-8b');
    expect(() => checkContexts([131072], llama.config, llama.source)).not.toThrow();
    expect(() => checkContexts([8192, 131073], llama.config, llama.source)).toThrow(/^context 131073: 131073 tokens is beyond the model's limit of 131072/);
    expect(() => readMemoryModelConfig({ randomWeights: join(work, 'nope.json') })).toThrow(/nope\.json: model config not found/);
    expect(() => readMemoryModelConfig({ model: join(work, 'nope') })).toThrow(/nope: model folder not found/);
    expect(() => readMemoryModelConfig({ model: run })).toThrow(/run\/config\.json: file not found/); // as generate says it
  });
});

describe('measure-memory and the CommVQ ablations (issue 18)', () => {
  it('refuses compress=keys or values in one line, and takes compress=both as CommVQ itself', async () => {
    await expect(memoryCacheSettings([{ kind: 'commvq', bits: 1, compress: 'keys' }], { randomWeights: true })).rejects.toThrow(/^cache: measure-memory does not measure compress=keys yet/);
    await expect(memoryCacheSettings([{ kind: 'commvq', bits: 1, compress: 'values' }], { randomWeights: true })).rejects.toThrow(/compress=values/);
    expect(await memoryCacheSettings([{ kind: 'commvq', bits: 1, compress: 'both' }], { randomWeights: true })).toEqual(await memoryCacheSettings([{ kind: 'commvq', bits: 1 }], { randomWeights: true }));
  });
});

describe('measure-memory and kivi (issue 18)', () => {
  it('takes kivi by bits, group and residual, and accounts a point by kiviCacheBytes', async () => {
    const settings = await memoryCacheSettings([{ kind: 'dense' }, { kind: 'kivi', bits: 2 }, { kind: 'kivi', bits: 1, group: 16, residual: 64 }], { randomWeights: true });
    expect(settings.slice(1)).toEqual([{ cache: 'kivi', bits: 2, group: 32, residual: 128 }, { cache: 'kivi', bits: 1, group: 16, residual: 64 }]);
    expect(settings.map(cacheLabel)).toEqual(['dense', 'kivi-2bit-g32-r128', 'kivi-1bit-g16-r64']);
    const [point] = gridPoints([settings[1]!], [1000], [2]);
    expect(point).toEqual({ cache: 'kivi', bits: 2, group: 32, residual: 128, context: 1000, batch: 2 });
    const config = parseModelConfig(DEMO_CONFIG, 'demo');
    const g = cacheGeometry(config);
    const r = accountPoint(config, point!, { decodeTokens: 24 });
    expect(r.breakdown.cacheArithmetic).toBe(2 * kiviCacheBytes(g, 1024, { bits: 2, group: 32, residual: 128 }));
    expect(r.bytesPerToken.arithmetic).toBe(2 * ((g.kvHeads * g.headDim * 2) / 8 + ((g.kvHeads * g.headDim) / 32) * 4));
  });

  it('accounts int4 with room for R − 1 exact tokens, and fp8 per token', () => {
    const config = parseModelConfig(DEMO_CONFIG, 'demo');
    const g = cacheGeometry(config);
    const W = g.kvHeads * g.headDim;
    const int4 = accountPoint(config, { cache: 'int4', group: 64, residual: 128, context: 100, batch: 1 }, { decodeTokens: 0 });
    expect(int4.breakdown.cacheArithmetic).toBe(g.numLayers * (100 * 2 * (W / 2 + (W / 64) * 4) + 127 * 2 * W * 2));
    const fp8 = accountPoint(config, { cache: 'fp8', context: 100, batch: 3 }, { decodeTokens: 0 });
    expect(fp8.breakdown.cacheArithmetic).toBe(3 * g.numLayers * 100 * 2 * (W + 4 * g.kvHeads));
  });
});
