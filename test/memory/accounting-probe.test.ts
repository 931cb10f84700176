/**
 * The CPU accounting path for Llama-3.1-8B (scripts/bench/llama-3.1-8b.config.json), every number against hand
 * arithmetic: weights 8,030,261,248 bf16 parameters; the cache for context + decoded tokens (spec §7.5); key θ in
 * f32 and value E in bf16; the value encoders of spec §5.2.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AccountingProbe, accountPoint, encoderParameterCount, GiB, loadGpuProbeFactory, openMemoryProbe, parameterCount, readMemoryModelConfig } from '../../src/core/memory/measure-memory.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const { config } = readMemoryModelConfig({ randomWeights: join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json') });

describe('the accounting probe (Llama-3.1-8B)', () => {
  it('counts the parameters: embeddings and lm_head 128256×4096 each, 32 blocks of 218,112,000, the final norm', () => {
    const block = 4096 * 4096 * 2 + 1024 * 4096 * 2 + 3 * 14336 * 4096 + 2 * 4096;
    expect(block).toBe(218_112_000);
    expect(parameterCount(config)).toBe(2 * 128256 * 4096 + 32 * block + 4096);
    expect(parameterCount(config)).toBe(8_030_261_248);
  });

  it('counts the value encoders as spec §5.2 does: with E they are 7,347,200 (1-bit) and 23,079,936 (2-bit) per layer', () => {
    expect(encoderParameterCount(config, 1) / 32 + 1024 * 1024).toBe(7_347_200);
    expect(encoderParameterCount(config, 2) / 32 + 2048 * 1024).toBe(23_079_936);
  });

  it('uses the geometry of given codebook files (R, N_c) instead of the standard one', () => {
    const r = accountPoint(config, { cache: 'commvq', bits: 1, context: 8192, batch: 1 }, { decodeTokens: 0, geometry: new Map([[1, { residuals: 3, codeBits: 256, window: 128 }]]) });
    // key: 3·8 codes of 12 bits = 36 bytes + a bf16 norm; value: 256 bits = 32 bytes + a bf16 scale
    expect(r.bytesPerToken.arithmetic).toBe(36 + 2 + 32 + 2);
    expect(r.breakdown.cacheArithmetic).toBe(32 * ((8192 - 128) * 72 + 128 * 4096));
  });

  it('fills a 1-bit point at 8K + 32 decoded tokens from the arithmetic', async () => {
    const probe = new AccountingProbe(config, { decodeTokens: 32 });
    expect(probe.measures).toBe(false);
    expect(probe.device).toBe('cpu');
    const r = await probe.probe({ cache: 'commvq', bits: 1, context: 8192, batch: 1 });
    expect(r.fits).toBe(true);
    expect(r.breakdown.weights).toBe(8_030_261_248 * 2); // 14.96 GiB, as spec §7.4 says
    // 8224 tokens: 128 exact (4096 B) and 8096 coded (132 + 2 key, 128 + 2 value), 32 layers
    expect(r.breakdown.cacheArithmetic).toBe(32 * (8096 * 264 + 128 * 4096));
    expect(r.breakdown.cacheArithmetic).toBe(85_172_224);
    expect(r.breakdown.cacheAllocated).toBe(r.breakdown.cacheArithmetic);
    // θ [R=11, G=8, 2·64, 64] f32 and E [1024, 1024] bf16, per layer
    expect(r.breakdown.codebooks).toBe(32 * (11 * 8 * 128 * 64 * 4 + 12 * 8 * 128 * 64 * 2 + 1024 * 1024 * 2)); // θ f32 and f16 (11 + 1 stages), E
    // LayerNorm 2·1024, enc1 2048×1024 + 2048, out 2048×2048 + 2048, scale 1024; bf16
    expect(r.breakdown.encoders).toBe(32 * (2048 + 2048 * 1024 + 2048 + 2048 * 2048 + 2048 + 1024) * 2); // bf16, as the device cache holds them
    expect(r.bytesPerToken).toEqual({ arithmetic: 264, allocated: 264 });
    expect(r.peakDecode).toBeUndefined();
    expect(r.deviceBytes).toBe(80 * GiB);
  });

  it('scales the cache with the batch: dense 128K × 2 is 32 GiB; 2-bit holds 512 B a token', () => {
    const dense = accountPoint(config, { cache: 'dense', context: 131072, batch: 2 }, { decodeTokens: 0 });
    expect(dense.breakdown.cacheArithmetic).toBe(32 * GiB);
    expect(dense.breakdown.codebooks + dense.breakdown.encoders).toBe(0);
    expect(dense.bytesPerToken.arithmetic).toBe(4096);
    const twoBit = accountPoint(config, { cache: 'commvq', bits: 2, context: 131072, batch: 3 }, { decodeTokens: 0 });
    expect(twoBit.breakdown.cacheArithmetic).toBe(3 * 32 * ((131072 - 128) * 512 + 128 * 4096));
    expect(twoBit.breakdown.codebooks).toBe(32 * (21 * 8 * 128 * 64 * 4 + 22 * 8 * 128 * 64 * 2 + 2048 * 1024 * 2));
  });

  it('says a point does not fit when its resident bytes exceed the assumed device, as an answer', () => {
    // 14.96 GiB weights + 8 × 16 GiB: beyond 80 GiB
    const r = accountPoint(config, { cache: 'dense', context: 131072, batch: 8 }, { decodeTokens: 0 });
    expect(r.fits).toBe(false);
    expect(r.reason).toMatch(/exceed the assumed 80.00 GiB/);
    const small = accountPoint(config, { cache: 'dense', context: 8192, batch: 1 }, { decodeTokens: 0, deviceBytes: 16 * GiB });
    expect(small.fits).toBe(true); // 14.96 + 1 GiB
    expect(accountPoint(config, { cache: 'dense', context: 8192, batch: 2 }, { decodeTokens: 0, deviceBytes: 16 * GiB }).fits).toBe(false);
  });

  it('opens the accounting probe on the CPU and the GPU probe on CUDA, or says GPU measurement is missing', async () => {
    const options = { model: undefined, randomWeights: 'x.json', caches: [{ cache: 'dense' as const }], device: 'cpu' as const, decodeTokens: 4 };
    expect(await openMemoryProbe(options, { config })).toBeInstanceOf(AccountingProbe);
    const missing = Object.assign(new Error("Cannot find module '/x/dist/core/memory/gpu-memory-probe.js'"), { code: 'ERR_MODULE_NOT_FOUND' });
    await expect(openMemoryProbe({ ...options, device: 'cuda' }, { config }, () => loadGpuProbeFactory(() => Promise.reject(missing)))).rejects.toThrow(
      'GPU memory measurement is not available in this build',
    );
    const fake = { device: 'cuda:0 (fake)', measures: true, probe: () => Promise.reject(new Error('unused')), dispose() {} };
    let seen: unknown;
    const gpu = await openMemoryProbe({ ...options, device: 'cuda' }, { config }, () =>
      loadGpuProbeFactory(async () => ({ createGpuMemoryProbe: async (o: unknown) => ((seen = o), fake) })),
    );
    expect(gpu).toBe(fake);
    expect(seen).toEqual({ ...options, device: 'cuda' });
    // an import that fails for another reason is not hidden behind the message
    await expect(loadGpuProbeFactory(() => Promise.reject(new SyntaxError('bad code')))).rejects.toThrow('bad code');
    const inner = Object.assign(new Error("Cannot find module 'koffi-x' imported from /x/dist/core/memory/gpu-memory-probe.js"), { code: 'ERR_MODULE_NOT_FOUND' });
    await expect(loadGpuProbeFactory(() => Promise.reject(inner))).rejects.toThrow(/koffi-x/);
  });
});
