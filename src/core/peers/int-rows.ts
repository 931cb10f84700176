/**
 * The int4/int2 row format (HF QuantizedCache with the quanto backend, axis 0): per-token asymmetric groups of `group`
 * consecutive channels (affine-groups.ts, 'token' axis), scale and zero stored as f16.
 *
 * One token's row, W = H_kv·D_h channels:  [ codes: W·bits/8 bytes, LSB-first (pack-codes.ts) |
 *   scales: W/group f16, little-endian | zeros: W/group f16, little-endian ]
 * so rowBytes = W·bits/8 + 4·W/group: bits + 32/group bits per value (INT4 g64: 4.5), the "average bits" of
 * cache-accounting.ts. A group must divide D_h (never straddling two heads, as HF's per-head tensors ensure).
 */
import { check } from '../errors.js';
import { dequantizeAffine, quantizeAffine, type AffineGroups } from '../quant/affine-groups.js';
import type { CodeBits } from '../quant/pack-codes.js';
import { f16ToF32, f32ToF16 } from '../tensor/dtype.js';
import type { RowCodec } from './row-codec.js';

/**
 * The codec of int{bits} in groups of `group` for H_kv heads of D_h channels.
 *
 *   const c = intRowCodec(4, 64, 8, 128);   // Llama-3.1-8B's K or V: c.rowBytes = 512 + 64 = 576 per token
 */
export function intRowCodec(bits: 4 | 2, group: number, kvHeads: number, headDim: number): RowCodec {
  check(headDim % group === 0, `int${bits} cache: group ${group} does not divide the head dimension ${headDim}`, 'groups are 32 or 64 channels of one head');
  const width = kvHeads * headDim; // W
  const codeBytes = (width * bits) / 8; // W·bits/8, whole bytes since group ≥ 8
  const groups = width / group;
  const rowBytes = codeBytes + 4 * groups;
  const f16At = (out: Uint8Array, i: number, v: number) => {
    const h = f32ToF16(v); // exact: quantizeAffine already rounded v to f16
    out[i] = h & 0xff;
    out[i + 1] = h >> 8;
  };
  return {
    name: `int${bits}-g${group}`,
    bits,
    rowBytes,
    encode(x, rows, out, at) {
      const g = quantizeAffine(x.subarray(0, rows * width), rows, width, 'token', { bits: bits as CodeBits, group }); // scales, zeros: [rows, W/group]
      for (let r = 0; r < rows; r++) {
        const o = (at + r) * rowBytes;
        out.set(g.codes.subarray(r * codeBytes, (r + 1) * codeBytes), o);
        for (let j = 0; j < groups; j++) {
          f16At(out, o + codeBytes + 2 * j, g.scales[r * groups + j]!);
          f16At(out, o + codeBytes + 2 * (groups + j), g.zeros[r * groups + j]!);
        }
      }
    },
    decode(bytes, from, rows) {
      const codes = new Uint8Array(rows * codeBytes); // [rows, W·bits/8]
      const scales = new Float32Array(rows * groups); // [rows, W/group]
      const zeros = new Float32Array(rows * groups); // [rows, W/group]
      for (let r = 0; r < rows; r++) {
        const o = (from + r) * rowBytes;
        codes.set(bytes.subarray(o, o + codeBytes), r * codeBytes);
        for (let j = 0; j < groups; j++) {
          const s = o + codeBytes + 2 * j;
          const z = o + codeBytes + 2 * (groups + j);
          scales[r * groups + j] = f16ToF32(bytes[s]! | (bytes[s + 1]! << 8));
          zeros[r * groups + j] = f16ToF32(bytes[z]! | (bytes[z + 1]! << 8));
        }
      }
      const g: AffineGroups = { axis: 'token', bits: bits as CodeBits, group, stored: 'f16', rows, cols: width, codes, scales, zeros };
      return dequantizeAffine(g);
    },
  };
}
