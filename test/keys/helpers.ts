/** Small random inputs for the key-codebook tests (seeded, so failures replay). */
import { SeededRandom } from '../../src/core/model/seeded-random.js';

export function randomArray(rng: SeededRandom, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

/**
 * Key-like data: N tokens of G·D_h channels (HF layout) with a few dominant directions and per-channel scales, so
 * that codebooks have structure to find.
 */
export function keyLikeRows(seed: number, N: number, width: number): Float32Array {
  const rng = new SeededRandom(seed);
  const scale = Float32Array.from({ length: width }, (_, c) => 0.3 + 2 * Math.abs(Math.sin(0.37 * c)));
  const basis = [randomArray(rng, width), randomArray(rng, width), randomArray(rng, width)];
  const out = new Float32Array(N * width);
  for (let t = 0; t < N; t++) {
    const a = basis.map(() => 2 * rng.normal());
    for (let c = 0; c < width; c++) {
      let v = 0.5 * rng.normal();
      for (let b = 0; b < basis.length; b++) v += a[b]! * basis[b]![c]!;
      out[t * width + c] = v * scale[c]!;
    }
  }
  return out;
}

/** max |a − b| / max(|b|) */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / (den || 1);
}
