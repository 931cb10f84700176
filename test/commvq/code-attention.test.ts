/**
 * Attention on codes equals dense attention over the dequantized keys and values (spec Appendix A): on random θ,
 * codes, queries and positions, including positions near 131072; and the packed formats round-trip.
 */
import { describe, expect, it } from 'vitest';
import { ropeF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import { codeLogits, codeValues, queryTables } from '../../src/core/commvq/code-attention.js';
import { packBits, packCodes12, packedCodeBytes, unpackBits, unpackCodes12 } from '../../src/core/tensor/code-packing.js';
import { LayerKeyCodebook } from '../../src/core/keys/codebook.js';
import { decodeKeys } from '../../src/core/keys/encoder.js';
import { ropeTable } from '../../src/core/model/rope.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';

const rng = new SeededRandom(2026);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => s * rng.normal());

describe.each([
  { headDim: 128, groups: 2, queryHeads: 8, residuals: 3 },
  { headDim: 64, groups: 1, queryHeads: 2, residuals: 2 },
])('code-space attention, D_h $headDim, GQA $queryHeads:$groups, R $residuals', ({ headDim, groups, queryHeads, residuals }) => {
  const pairs = headDim / 2;
  const cb = new LayerKeyCodebook({ residuals, groups, halfSize: 64, pairs }, randn(residuals * groups * 128 * pairs, 0.1));
  const N = 9;
  const codes = Uint16Array.from({ length: residuals * groups * N }, () => Math.floor(rng.uniform() * 4096)); // [R, G, N]
  const norms = Float32Array.from({ length: N }, () => 0.5 + rng.uniform() * 3);
  const positions = Int32Array.from([0, 1, 2, 1000, 8191, 8192, 65536, 131070, 131071]);
  const rope = ropeTable({ type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }, headDim);
  const q = randn(queryHeads * headDim);
  const width = groups * headDim;

  it('logits equal q · RoPE(dequantized k) / √D_h', () => {
    const keys = decodeKeys(cb, { tokens: N, codes, norms }); // [N, G·D_h] HF, pre-RoPE
    const rotated = ropeF32(keys, positions, rope);
    const tokenMajor = new Uint16Array(N * residuals * groups);
    for (let t = 0; t < N; t++) for (let r = 0; r < residuals; r++) for (let g = 0; g < groups; g++) tokenMajor[(t * residuals + r) * groups + g] = codes[(r * groups + g) * N + t]!;
    for (let h = 0; h < queryHeads; h++) {
      const g = Math.floor(h / (queryHeads / groups));
      const logits = new Float64Array(N);
      codeLogits(cb, g, queryTables(cb, g, q, h * headDim), tokenMajor, norms, positions, rope.invFreq, logits);
      for (let t = 0; t < N; t++) {
        let dense = 0;
        for (let c = 0; c < headDim; c++) dense += q[h * headDim + c]! * rotated[t * width + g * headDim + c]!;
        dense /= Math.sqrt(headDim);
        expect(Math.abs(logits[t]! - dense), `head ${h} token ${t} (position ${positions[t]})`).toBeLessThan(1e-4 * (1 + Math.abs(dense)));
      }
    }
  });

  it('values: weighted bit sums times the codebook equal the weighted sum of decoded values', () => {
    const Nc = 2 * width;
    const E = randn(Nc * width);
    const ls = Float32Array.from({ length: width }, () => 0.1 + rng.uniform());
    const bits = Float32Array.from({ length: N * Nc }, () => (rng.uniform() < 0.5 ? 1 : 0));
    const rho = Float32Array.from({ length: N }, () => 0.2 + rng.uniform());
    const weights = Float64Array.from({ length: N }, () => rng.uniform());
    for (let h = 0; h < groups; h++) {
      const out = new Float64Array(headDim);
      codeValues(weights, rho, bits, Nc, E, width, h, headDim, ls, out);
      for (let c = 0; c < headDim; c++) {
        let dense = 0;
        for (let t = 0; t < N; t++) {
          let w = 0; // (b_t·E)[channel]
          for (let d = 0; d < Nc; d++) w += bits[t * Nc + d]! * E[d * width + h * headDim + c]!;
          dense += weights[t]! * w * rho[t]! * (ls[h * headDim + c]! + 1e-6);
        }
        expect(Math.abs(out[c]! - dense)).toBeLessThan(1e-9 * (1 + Math.abs(dense)));
      }
    }
  });
});

describe('packing', () => {
  it.each([1, 2, 87, 88, 231])('round-trips %i 12-bit codes, in %s bytes', (n) => {
    const codes = Uint16Array.from({ length: n }, () => Math.floor(rng.uniform() * 4096));
    const bytes = packCodes12(codes);
    expect(bytes.length).toBe(packedCodeBytes(n));
    expect(Array.from(unpackCodes12(bytes, n))).toEqual(Array.from(codes));
  });

  it('packs R = 11 by G = 8 codes in 132 bytes, as the paper counts', () => expect(packedCodeBytes(88)).toBe(132));

  it('round-trips value bits LSB-first', () => {
    const bits = Float32Array.from({ length: 1024 }, () => (rng.uniform() < 0.5 ? 1 : 0));
    const bytes = packBits(bits);
    expect(bytes.length).toBe(128);
    expect(bytes[0]).toBe([0, 1, 2, 3, 4, 5, 6, 7].reduce((b, i) => b | (bits[i]! << i), 0));
    expect(Array.from(unpackBits(bytes, 1024))).toEqual(Array.from(bits));
  });
});
