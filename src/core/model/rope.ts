import type { RopeTable } from '../backend/backend.js';
import type { RopeConfig } from './config.js';

/**
 * The inverse frequencies of rotary embeddings, computed the way transformers does in f32:
 *   invFreq_j = 1 / θ^(2j / D_h),  j = 0 .. D_h/2 − 1,
 * then for llama3 scaling (wavelen_j = 2π / invFreq_j, L = original context):
 *   wavelen > L / lowFreqFactor  → invFreq / factor   (low frequencies stretched)
 *   wavelen < L / highFreqFactor → unchanged          (high frequencies kept)
 *   otherwise smooth = (L / wavelen − low) / (high − low), invFreq = (1 − smooth)·invFreq/factor + smooth·invFreq.
 * Every intermediate is rounded to f32 so the angles match PyTorch's to the last bit.
 *
 *   const table = ropeTable({ type: 'default', theta: 10000 }, 128);  // table.invFreq.length === 64
 */
export function ropeTable(rope: RopeConfig, headDim: number): RopeTable {
  const f = Math.fround;
  const half = headDim / 2;
  const invFreq = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    const exponent = f((2 * j) / headDim);
    invFreq[j] = f(1 / f(Math.pow(rope.theta, exponent)));
  }
  if (rope.type === 'llama3') {
    const L = rope.originalMaxPositionEmbeddings;
    const lowWavelen = f(L / rope.lowFreqFactor);
    const highWavelen = f(L / rope.highFreqFactor);
    for (let j = 0; j < half; j++) {
      const inv = invFreq[j]!;
      const wavelen = f(f(2 * Math.PI) / inv);
      if (wavelen > lowWavelen) {
        invFreq[j] = f(inv / rope.factor);
      } else if (wavelen >= highWavelen) {
        const smooth = f(f(f(L / wavelen) - rope.lowFreqFactor) / (rope.highFreqFactor - rope.lowFreqFactor));
        invFreq[j] = f(f(f(f(1 - smooth) * inv) / rope.factor) + f(smooth * inv));
      }
    }
  }
  return { invFreq, headDim, attentionScaling: 1 };
}
