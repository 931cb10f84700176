import { CommvqError } from '../errors.js';

/**
 * The RoPE-commutative key codebook of one layer (spec §3.3), stored as θ only: centres are rebuilt from θ when
 * needed, never stored expanded.
 *
 * Per residual stage r and group g (one KV head), θ_{r,g} is [2·N_h, P] f32: θ[2i, j] = X_{i,j}, θ[2i+1, j] = Y_{i,j}
 * for codeword i < N_h and pair j < P (= D_h/2); z_{i,j} = X_{i,j} + i·Y_{i,j}. A code c < N_h² splits as
 * A = floor(c / N_h), B = c mod N_h (12 bits for N_h = 64: c = 64A + B), and selects at pair j the centre
 *   z_{A,j} + i·z_{B,j}  =  (X_{A,j} − Y_{B,j},  Y_{A,j} + X_{B,j})   in PI layout (components 2j, 2j+1).
 * Such 2×2 blocks commute with every RoPE rotation (§6.8), so attention can run on codes.
 */

/** Half-codebook size of the reference (paper N_c′): 64 complex codewords per pair, 12-bit codes. */
export const HALF_SIZE = 64;

export interface KeyCodebookShape {
  /** R: residual stages */
  readonly residuals: number;
  /** G: groups = KV heads */
  readonly groups: number;
  /** N_h: codewords per half (centres per stage and group: N_h²) */
  readonly halfSize: number;
  /** P: complex pairs per group = D_h/2 */
  readonly pairs: number;
}

/** Floats in one θ_{r,g}: 2·N_h·P. */
export function stageThetaSize(s: Pick<KeyCodebookShape, 'halfSize' | 'pairs'>): number {
  return 2 * s.halfSize * s.pairs;
}

/**
 * θ of one layer, [R, G, 2·N_h, P] f32.
 *
 *   const cb = new LayerKeyCodebook({ residuals: 11, groups: 8, halfSize: 64, pairs: 64 }, theta);
 *   const c = cb.centres(0, 3);   // [4096, 128] PI, built on the fly
 */
export class LayerKeyCodebook {
  readonly theta: Float32Array;

  constructor(
    readonly shape: KeyCodebookShape,
    theta?: Float32Array,
  ) {
    const n = shape.residuals * shape.groups * stageThetaSize(shape);
    if (theta && theta.length !== n) {
      throw new CommvqError(`key codebook: θ has ${theta.length} values, [${shape.residuals}, ${shape.groups}, ${2 * shape.halfSize}, ${shape.pairs}] needs ${n}`);
    }
    this.theta = theta ?? new Float32Array(n);
  }

  get headDim(): number {
    return 2 * this.shape.pairs;
  }

  /** θ_{r,g} as a view [2·N_h, P]. */
  stage(r: number, g: number): Float32Array {
    const size = stageThetaSize(this.shape);
    const at = (r * this.shape.groups + g) * size;
    return this.theta.subarray(at, at + size);
  }

  /** The N_h² centres of stage r, group g: [N_h², D_h] PI layout. */
  centres(r: number, g: number): Float32Array {
    return centresFromTheta(this.stage(r, g), this.shape.halfSize, this.shape.pairs);
  }

  /** The first `residuals` stages as a codebook of their own (greedy stages nest: §3.5). */
  truncate(residuals: number): LayerKeyCodebook {
    const size = residuals * this.shape.groups * stageThetaSize(this.shape);
    return new LayerKeyCodebook({ ...this.shape, residuals }, this.theta.slice(0, size));
  }
}

/**
 * Centres from θ [2·N_h, P]: C[64A + B, 2j] = X_{A,j} − Y_{B,j}, C[.., 2j+1] = Y_{A,j} + X_{B,j} (for N_h = 64).
 * Output [N_h², 2P] PI layout.
 */
export function centresFromTheta(theta: ArrayLike<number>, halfSize: number, pairs: number): Float32Array {
  const D = 2 * pairs;
  const out = new Float32Array(halfSize * halfSize * D);
  for (let A = 0; A < halfSize; A++) {
    const xA = 2 * A * pairs;
    const yA = xA + pairs;
    for (let B = 0; B < halfSize; B++) {
      const xB = 2 * B * pairs;
      const yB = xB + pairs;
      const o = (A * halfSize + B) * D;
      for (let j = 0; j < pairs; j++) {
        out[o + 2 * j] = theta[xA + j]! - theta[yB + j]!;
        out[o + 2 * j + 1] = theta[yA + j]! + theta[xB + j]!;
      }
    }
  }
  return out;
}
