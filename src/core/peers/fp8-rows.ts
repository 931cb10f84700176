/**
 * The fp8 row format: e4m3 codes (fp8-e4m3.ts) with one f32 scale per token and head, scale = amax/448 over the
 * head's D_h channels of that token.
 *
 * One token's row, W = H_kv·D_h:  [ codes: W bytes, e4m3 | scales: H_kv f32, little-endian ]
 * so rowBytes = W + 4·H_kv: 8 + 32/D_h bits per value (8.25 at D_h = 128).
 *
 * Why a scale per token and head, not one per head for the whole stream (vLLM's static k_scale) nor one per appended
 * block: a token's codes then depend on that token alone, so a later outlier never saturates against an older scale
 * (nor forces old codes to be rescaled), the cache is the same however the prompt was chunked or the batch formed,
 * and a GPU twin needs no reduction across tokens. It costs 32/D_h bits per value; the error bound of
 * fp8-e4m3.ts (relative 2^−4 of each value, absolute 2^−10·scale below the subnormal edge) holds per token.
 */
import { dequantizeFp8PerHead, quantizeFp8PerHead } from '../quant/fp8-e4m3.js';
import type { RowCodec } from './row-codec.js';

/**
 * The fp8 codec for H_kv heads of D_h channels.
 *
 *   const c = fp8RowCodec(8, 128);   // Llama-3.1-8B's K or V: c.rowBytes = 1024 + 32 per token
 */
export function fp8RowCodec(kvHeads: number, headDim: number): RowCodec {
  const width = kvHeads * headDim; // W
  const rowBytes = width + 4 * kvHeads;
  return {
    name: 'fp8',
    bits: 8,
    rowBytes,
    encode(x, rows, out, at) {
      for (let r = 0; r < rows; r++) {
        const g = quantizeFp8PerHead(x.subarray(r * width, (r + 1) * width), 1, kvHeads, headDim); // codes [1, W], scales [H_kv]
        const o = (at + r) * rowBytes;
        out.set(g.codes, o);
        const view = new DataView(out.buffer, out.byteOffset + o + width, 4 * kvHeads);
        g.scales.forEach((s, h) => view.setFloat32(4 * h, s, true));
      }
    },
    decode(bytes, from, rows) {
      const out = new Float32Array(rows * width); // [rows, W]
      for (let r = 0; r < rows; r++) {
        const o = (from + r) * rowBytes;
        const view = new DataView(bytes.buffer, bytes.byteOffset + o + width, 4 * kvHeads);
        const scales = Float32Array.from({ length: kvHeads }, (_, h) => view.getFloat32(4 * h, true)); // [H_kv]
        out.set(dequantizeFp8PerHead({ rows: 1, heads: kvHeads, headDim, codes: bytes.subarray(o, o + width), scales }), r * width);
      }
      return out;
    },
  };
}
