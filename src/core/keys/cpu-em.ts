import { nearestCentre, stageTables, subtractCentre, tokenScratch } from './distance.js';
import type { EmBackend } from './em.js';
import { eStepDense, eStepStructured } from './estep.js';
import { solveTheta, type EStats } from './mstep.js';
import { gatherRows } from './layout.js';

/**
 * EM on the CPU with the structured E-step (f64 arithmetic, f32 data): the reference the GPU is tested against.
 * V [N, D_h] (PI, normalised) is the group's data and becomes its residual stage after stage.
 *
 *   const stages = trainGroupEm(new CpuEmBackend(V, n2, 64), 11, rngOf);
 */
export class CpuEmBackend implements EmBackend<Float32Array> {
  readonly tokens: number;
  readonly headDim: number;
  private stats: EStats | undefined;

  constructor(
    readonly V: Float32Array,
    /** n_t² [N]: squared token norms, for errors in key units */
    readonly n2: Float32Array,
    readonly halfSize: number,
  ) {
    this.tokens = n2.length;
    this.headDim = V.length / n2.length;
  }

  init(indices: Int32Array, invTau: number): Float32Array {
    const centres = gatherRows(this.V, indices, this.headDim);
    return solveTheta(eStepDense(this.V, this.n2, centres, this.halfSize, invTau));
  }

  eStep(theta: Float32Array, invTau: number): number {
    this.stats = eStepStructured(this.V, this.n2, stageTables(theta, this.halfSize, this.headDim >> 1), invTau);
    return this.stats.hardSum;
  }

  mStep(): Float32Array {
    if (!this.stats) throw new Error('mStep before eStep');
    return solveTheta(this.stats);
  }

  keep(theta: Float32Array): Float32Array {
    return theta; // every M-step returns a new array
  }

  residual(theta: Float32Array): number {
    const D = this.headDim;
    const P = D >> 1;
    const tables = stageTables(theta, this.halfSize, P);
    const scratch = tokenScratch(this.halfSize);
    let sum = 0;
    for (let t = 0; t < this.tokens; t++) {
      const { code } = nearestCentre(tables, this.V, t * D, scratch);
      subtractCentre(theta, this.halfSize, P, code, this.V, t * D);
      let s = 0;
      for (let k = 0; k < D; k++) s += this.V[t * D + k]! ** 2;
      sum += this.n2[t]! * s;
    }
    return sum;
  }

  read(theta: Float32Array): Float32Array {
    return theta;
  }
}
