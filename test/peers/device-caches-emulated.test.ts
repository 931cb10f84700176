/**
 * The peer caches' device code paths (DeviceRowQuantCache, DeviceKiviCache, the launchers of ops/peer-cache.ts) on the
 * emulated device of test/helpers/peer-device-emulator.ts, against their CPU references: the GPU test's scenario
 * (test/helpers/peer-scenario.ts — mixed-length batches, a chunked prompt, flushes; bounds argued in
 * test/gpu/peer-caches.test.ts) at one geometry per head size, so that every split, slot, ring and argument the
 * device caches compute is checked on any machine. And the two bit-level tricks of the kernels, against fp8-e4m3.ts:
 * the e4m3 encoder of peer_formats.cuh, and e4m3 widened through f16 in peer_attention_decode.cu.
 */
import { describe, expect, it } from 'vitest';
import type { CacheShape } from '../../src/core/model/kv-cache.js';
import { e4m3ToF32, f32ToE4m3 } from '../../src/core/quant/fp8-e4m3.js';
import { e4m3x4Cuda, EmulatedCuda, f32ToE4m3Cuda } from '../helpers/peer-device-emulator.js';
import { KINDS, runPeerScenario } from '../helpers/peer-scenario.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';

describe('peer caches on the emulated device against their CPU references', () => {
  it.each(KINDS.map((k) => [k.name, k] as const))('%s: H_kv 2, G 3, D_h 64, three sequences, a chunked prompt, 20 batched decode steps', (_n, kind) => {
    const shape: CacheShape = { numLayers: 1, queryHeads: 6, kvHeads: 2, headDim: 64 };
    const dev = new EmulatedCuda();
    runPeerScenario(kind, shape, { prompts: [[3], [21], [13, 17]], steps: 20, capacity: 80, seed: 11 }, dev.backend);
    expect(dev.launched.some((k) => k.startsWith('peer_decode_'))).toBe(true);
  });

  it.each(KINDS.filter((k) => /^(int4-g64|fp8|kivi1-g16)/.test(k.name)).map((k) => [k.name, k] as const))('%s: H_kv 1, G 8, D_h 128, one sequence of 150 tokens over several units', (_n, kind) => {
    const dev = new EmulatedCuda();
    runPeerScenario(kind, { numLayers: 1, queryHeads: 8, kvHeads: 1, headDim: 128 }, { prompts: [[100, 40]], steps: 10, capacity: 160, seed: 5 }, dev.backend);
  });
});

describe('the kernels’ bit-level e4m3, against fp8-e4m3.ts', () => {
  it('encodes as f32ToE4m3: every code’s value, the midpoints between codes, the saturation edge and random values', () => {
    const xs: number[] = [0, -0, 448, 464, 1e9, -1e9, 2 ** -6, 2 ** -10, 2 ** -9 * 1.5];
    for (let c = 0; c < 256; c++) {
      const v = e4m3ToF32(c);
      if (!Number.isFinite(v)) continue;
      xs.push(v, Math.fround(v * (1 + 2 ** -5)), Math.fround(v * (1 - 2 ** -5)), Math.fround(v * 1.0625));
    }
    const rng = new SeededRandom(3);
    for (let i = 0; i < 5000; i++) xs.push(Math.fround((rng.uniform() - 0.5) * 2 ** (rng.uniform() * 24 - 12)));
    for (const x of xs) expect(f32ToE4m3Cuda(x), `x = ${x}`).toBe(f32ToE4m3(Math.fround(x)));
  });

  it('decodes four codes of a word through f16 as e4m3ToF32 · 2^-8, for every code but NaN', () => {
    for (let c = 0; c < 256; c++) {
      if ((c & 0x7f) === 0x7f) continue;
      const word = (c | ((c ^ 0x80) << 8) | (((c + 1) & 0xff) << 16) | (c << 24)) >>> 0;
      const want = [c, c ^ 0x80, (c + 1) & 0xff, c].map((k) => ((k & 0x7f) === 0x7f ? NaN : e4m3ToF32(k) * 2 ** -8));
      const got = e4m3x4Cuda(word);
      want.forEach((w, i) => {
        if (!Number.isNaN(w)) expect(got[i], `code ${c}, lane ${i}`).toBe(w);
      });
    }
  });
});
