/**
 * measure-memory's GPU side: the caching allocator's counts agree with the driver's free memory, and the GPU probe
 * measures dense, CommVQ (faithful and strict prefill) and peer-cache (KIVI, int4, fp8) points of a small random model (peaks cover what is
 * resident, a batch that cannot fit is an answer rather than a crash).
 *
 * Allocator vs driver: cuMemAlloc hands out whole 2 MiB pages for large blocks and the driver may keep a little
 * bookkeeping of its own, so the driver's used memory must grow by the allocator's bytes within 2 MiB per block
 * plus 64 MiB (other processes on a shared GPU could move it further; the test GPU runs one job at a time). Once
 * freed, the driver's use falls back to where it was, within 64 MiB and 2% of what was mapped (its page tables).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CudaBackend, cudaAvailable } from '../../src/core/backend/cuda/cuda-backend.js';
import { createGpuMemoryProbe } from '../../src/core/memory/gpu-memory-probe.js';

const gpu = cudaAvailable();
const MiB = 2 ** 20;

describe.skipIf(!gpu)('GPU memory measurement', () => {
  const dir = mkdtempSync(join(tmpdir(), 'commvq-memory-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('allocator counts agree with the driver within a small margin', () => {
    const backend = new CudaBackend();
    const used = () => {
      const { free, total } = backend.ctx.deviceMemory();
      return total - free;
    };
    backend.ctx.alloc(64 * MiB).free(); // the driver sets up its first large allocation once
    backend.ctx.allocator.releaseCached();
    const driver0 = used();
    const alloc0 = backend.memory().bytesInUse;
    const blocks = [256, 1000, 3, 4096].map((mib) => backend.ctx.alloc(mib * MiB));
    const grown = used() - driver0;
    const counted = backend.memory().bytesInUse - alloc0;
    expect(counted).toBe((256 + 1000 + 4 + 4096) * MiB); // 3 MiB rounds up to 4
    // 2 MiB of rounding per block, the driver's fixed part, and its page tables, which grow with the range mapped
    // (84 MiB for 5.26 GiB on an H200, where 72 MiB had been the bound)
    expect(Math.abs(grown - counted), `driver grew ${grown}, allocator counted ${counted}`).toBeLessThanOrEqual(blocks.length * 2 * MiB + 64 * MiB + 0.02 * counted);
    blocks.forEach((b) => b.free());
    backend.ctx.allocator.releaseCached();
    // the driver may keep its page tables for the range it mapped (seen: 78 MiB after 5.4 GiB on an H200)
    expect(Math.abs(used() - driver0)).toBeLessThanOrEqual(64 * MiB + 0.02 * counted);
  });

  it('measures dense and CommVQ points of a small model, and reports a batch that cannot fit', async () => {
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({
      architectures: ['LlamaForCausalLM'], vocab_size: 1000, hidden_size: 512, intermediate_size: 1024, num_hidden_layers: 2,
      num_attention_heads: 8, num_key_value_heads: 2, head_dim: 128, max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 10000,
    }));
    const probe = await createGpuMemoryProbe({ model: undefined, randomWeights: config, caches: [{ cache: 'dense' }, { cache: 'commvq', bits: 1, prefillMode: 'faithful' }, { cache: 'commvq', bits: 1, prefillMode: 'strict' }], device: 'cuda', decodeTokens: 4 });
    const commvq = (prefillMode: 'faithful' | 'strict') => ({ cache: 'commvq' as const, bits: 1 as const, prefillMode, context: 2500, batch: 3 });
    for (const spec of [{ cache: 'dense' as const, context: 2500, batch: 1 }, commvq('faithful'), commvq('strict')]) {
      const r = await probe.probe(spec);
      const resident = r.breakdown.weights + r.breakdown.cacheAllocated + r.breakdown.codebooks + r.breakdown.encoders;
      expect(r.fits).toBe(true);
      expect(r.peakPrefill!).toBeGreaterThanOrEqual(resident);
      expect(r.peakDecode!).toBeGreaterThanOrEqual(resident);
      expect(r.driverUsedDecode!).toBeGreaterThanOrEqual(r.peakDecode! - 64 * MiB);
      expect(r.decodeMsPerStep!).toBeGreaterThan(0);
      expect(r.breakdown.cacheAllocated).toBeGreaterThanOrEqual(r.breakdown.cacheArithmetic);
      if (spec.cache === 'commvq') {
        expect(r.bytesPerToken.arithmetic).toBe(132 * 2 / 8 + 2 + 256 / 8 + 2); // R = 11 codes of 2 heads, N_c = 256 bits
        expect(r.breakdown.codebooks).toBeGreaterThan(0);
        expect(r.prefillPhases, spec.prefillMode).toHaveProperty('keys'); // the cache was made with timePhases in either mode
      }
    }
    // a max-batch trial reserves the workspace the batch-1 prompt needed instead of running it
    const trial = await probe.probe({ cache: 'dense', context: 2500, batch: 4, prefill: 'reserve' });
    expect(trial.prefillPeak).toBe('reserved');
    const dense1 = await probe.probe({ cache: 'dense', context: 2500, batch: 1 });
    expect(trial.peakPrefill! - trial.breakdown.cacheAllocated).toBeCloseTo(dense1.peakPrefill! - dense1.breakdown.cacheAllocated, -7);
    const huge = await probe.probe({ cache: 'dense', context: 8192, batch: 100_000 });
    expect(huge.fits).toBe(false);
    expect(huge.reason).toMatch(/out of memory/i);
    probe.dispose();
  });

  it('measures the peer caches (issue 18): KIVI, int4 and fp8 points of a small model, their bytes per token as the formats say', async () => {
    const config = join(dir, 'config-peers.json');
    writeFileSync(config, JSON.stringify({
      architectures: ['LlamaForCausalLM'], vocab_size: 1000, hidden_size: 512, intermediate_size: 1024, num_hidden_layers: 2,
      num_attention_heads: 8, num_key_value_heads: 2, head_dim: 128, max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 10000,
    }));
    const kivi = { cache: 'kivi' as const, bits: 2 as const, group: 32, residual: 128 };
    const int4 = { cache: 'int4' as const, group: 64, residual: 128 };
    const fp8 = { cache: 'fp8' as const };
    const probe = await createGpuMemoryProbe({ model: undefined, randomWeights: config, caches: [kivi, int4, fp8], device: 'cuda', decodeTokens: 4 });
    const W = 2 * 128;
    // per token and layer, keys and values: codes, then f16 scale and zero per group (KIVI, int4) or f32 per head (fp8)
    const perToken = { kivi: 2 * ((W * 2) / 8 + (W / 32) * 4), int4: 2 * ((W * 4) / 8 + (W / 64) * 4), fp8: 2 * (W + 4 * 2) };
    for (const setting of [kivi, int4, fp8]) {
      const r = await probe.probe({ ...setting, context: 2500, batch: 3 });
      const resident = r.breakdown.weights + r.breakdown.cacheAllocated;
      expect(r.fits, setting.cache).toBe(true);
      expect(r.peakPrefill!).toBeGreaterThanOrEqual(resident);
      expect(r.peakDecode!).toBeGreaterThanOrEqual(resident);
      expect(r.decodeMsPerStep!).toBeGreaterThan(0);
      expect(r.bytesPerToken.arithmetic).toBe(perToken[setting.cache]);
      // preallocated for every token, plus exact rows the arithmetic counts only as held: never below it
      expect(r.bytesPerToken.allocated).toBeGreaterThanOrEqual(r.bytesPerToken.arithmetic);
      expect(r.breakdown.cacheAllocated).toBeGreaterThanOrEqual(r.breakdown.cacheArithmetic);
    }
    probe.dispose();
  });
});
