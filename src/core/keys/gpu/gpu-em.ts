import type { CudaContext } from '../../backend/cuda/context.js';
import { emptyTensor, type CudaTensor } from '../../backend/cuda/cuda-tensor.js';
import { copyInto, downloadFrom, uploadTo, zeroFill } from '../../backend/cuda/ops/copies.js';
import * as k from '../../backend/cuda/ops/key-codebook.js';
import { CommvqError } from '../../errors.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { EmBackend } from '../em.js';

/**
 * EM on the GPU (kernels/key_*.cu through backend/cuda/ops/key-codebook.ts), one group at a time, the same loop as
 * the CPU (em.ts drives both). θ handles are f32 [thetaFloats(P)] device tensors holding θ and its tables; the host
 * reads back one float per E-step (hard_mse, for the stop rule). One owner, `dispose()` frees everything.
 *
 *   const be = new GpuEmBackend(ctx, keys.group(g), keys.n2, 128);
 *   const stages = trainGroupEm(be, 11, rngOf);  be.dispose();
 */
export class GpuEmBackend implements EmBackend<CudaTensor> {
  readonly tokens: number;
  private readonly blocks: number;
  private readonly stride: number;
  private readonly buffers: CudaTensor[] = [];
  private readonly partial: CudaTensor;
  private readonly stats: CudaTensor;
  private readonly thetas: [CudaTensor, CudaTensor, CudaTensor];
  private readonly vn: CudaTensor;
  private readonly idx: CudaTensor;
  private readonly err: CudaTensor;
  private readonly chunk: number;
  private d2: CudaTensor | undefined;
  private last: CudaTensor | undefined;

  constructor(
    private readonly ctx: CudaContext,
    /** V f32 [N, D] (PI, normalised), overwritten by the residual: a group of GpuKeys */
    private readonly V: Tensor,
    /** n2 f32 [N] */
    private readonly n2: Tensor,
    readonly headDim: number,
  ) {
    if (headDim !== 64 && headDim !== 128) throw new CommvqError(`GPU key EM supports head_dim 64 and 128, not ${headDim}`, 'use --device cpu');
    this.tokens = V.shape[0]!;
    this.blocks = k.estepBlocks(ctx);
    this.stride = k.statsStride(headDim);
    const alloc = (n: number) => {
      const t = emptyTensor(ctx, [n], 'f32');
      this.buffers.push(t);
      return t;
    };
    this.partial = alloc(this.blocks * this.stride); // [blocks, stride]
    this.stats = alloc(this.stride);
    const tf = k.thetaFloats(headDim / 2);
    this.thetas = [alloc(tf), alloc(tf), alloc(tf)];
    this.vn = alloc(this.tokens);
    this.idx = emptyTensor(ctx, [k.keyCentres()], 'i32');
    this.buffers.push(this.idx);
    this.err = alloc(this.blocks);
    this.chunk = Math.min(this.tokens, 65536);
  }

  init(indices: Int32Array, invTau: number): CudaTensor {
    const { ctx } = this;
    const K = k.keyCentres();
    if (indices.length !== K) throw new Error(`GPU EM init: ${indices.length} centres, the kernels need ${K}`);
    this.d2 ??= emptyTensor(ctx, [this.chunk, K], 'f32');
    uploadTo(ctx, this.idx, indices);
    k.sqnormRows(ctx, this.V, this.vn);
    zeroFill(ctx, this.partial);
    for (let n0 = 0; n0 < this.tokens; n0 += this.chunk) {
      const rows = Math.min(this.chunk, this.tokens - n0);
      k.distGemm(ctx, this.V, this.idx, this.vn, this.d2, n0, rows);
      k.estepSoft(ctx, this.blocks, this.V, this.n2, undefined, this.d2, n0, rows, invTau, this.partial);
    }
    k.reduce(ctx, this.partial, this.stats, this.blocks, this.stride);
    this.last = undefined;
    return this.solveInto(this.thetas[0]);
  }

  eStep(theta: CudaTensor, invTau: number): number {
    const { ctx } = this;
    zeroFill(ctx, this.partial);
    k.estepSoft(ctx, this.blocks, this.V, this.n2, theta, undefined, 0, this.tokens, invTau, this.partial);
    k.reduce(ctx, this.partial, this.stats, this.blocks, this.stride);
    this.last = theta;
    return downloadFrom(ctx, this.stats.view(k.statsHardIndex(this.headDim) * 4, [1]), new Float32Array(1))[0]!;
  }

  mStep(): CudaTensor {
    return this.solveInto(this.last === this.thetas[0] ? this.thetas[1] : this.thetas[0]);
  }

  keep(theta: CudaTensor): CudaTensor {
    const best = this.thetas[2];
    if (theta !== best) copyInto(this.ctx, best, theta);
    return best;
  }

  residual(theta: CudaTensor): number {
    zeroFill(this.ctx, this.err);
    k.assign(this.ctx, this.blocks, this.V, this.n2, theta, undefined, this.err);
    return downloadFrom(this.ctx, this.err, new Float32Array(this.blocks)).reduce((a, b) => a + b, 0);
  }

  read(theta: CudaTensor): Float32Array {
    return downloadFrom(this.ctx, theta.view(0, [64 * this.headDim]), new Float32Array(64 * this.headDim));
  }

  /** The statistics of the last E-step (w [4096], S [128, D], hard): for tests against the CPU. */
  readStats(): Float32Array {
    return downloadFrom(this.ctx, this.stats, new Float32Array(this.stride));
  }

  dispose(): void {
    this.ctx.synchronize();
    for (const b of this.buffers.splice(0)) b.dispose();
    this.d2?.dispose();
    this.d2 = undefined;
  }

  private solveInto(target: CudaTensor): CudaTensor {
    k.solveTheta(this.ctx, this.stats, target, this.headDim);
    k.stageTables(this.ctx, target, this.headDim / 2);
    return target;
  }
}

/** Keys on the GPU, prepared as spec §3.2: v f32 [G, N, D] (PI, normalised) and n2 f32 [N]. One owner: `dispose()`. */
export class GpuKeys {
  private constructor(
    private readonly ctx: CudaContext,
    readonly v: CudaTensor,
    readonly n2: CudaTensor,
    readonly tokens: number,
    readonly groups: number,
    readonly headDim: number,
  ) {}

  /**
   * Uploads rows [N, G·D] (HF, pre-RoPE) in chunks and prepares them on the GPU. NaN or infinite values are a
   * CommvqError (`what` names the data).
   */
  static upload(ctx: CudaContext, rows: Float32Array, groups: number, headDim: number, what = 'keys'): GpuKeys {
    const width = groups * headDim;
    const N = rows.length / width;
    const keys = GpuKeys.allocate(ctx, N, groups, headDim);
    const chunkRows = Math.max(1, Math.min(N, Math.floor((64 << 20) / (width * 4))));
    const chunk = emptyTensor(ctx, [chunkRows, width], 'f32');
    const bad = emptyTensor(ctx, [1], 'i32');
    try {
      zeroFill(ctx, bad);
      for (let n0 = 0; n0 < N; n0 += chunkRows) {
        const T = Math.min(chunkRows, N - n0);
        const part = chunk.rows(0, T);
        uploadTo(ctx, part, rows.subarray(n0 * width, (n0 + T) * width));
        k.prepareKeys(ctx, part, undefined, keys.v, keys.n2, bad, n0);
      }
      keys.checkFinite(bad, what);
    } catch (err) {
      keys.dispose();
      throw err;
    } finally {
      chunk.dispose();
      bad.dispose();
    }
    return keys;
  }

  /** Prepares raw f32 rows already on the device [N, G·D], each channel multiplied by `scale` f32 [G·D] when given. */
  static fromDevice(ctx: CudaContext, raw: Tensor, scale: Tensor | undefined, groups: number, headDim: number): GpuKeys {
    const keys = GpuKeys.allocate(ctx, raw.shape[0]!, groups, headDim);
    const bad = emptyTensor(ctx, [1], 'i32');
    try {
      zeroFill(ctx, bad);
      k.prepareKeys(ctx, raw, scale, keys.v, keys.n2, bad, 0);
      keys.checkFinite(bad, 'keys');
    } finally {
      bad.dispose();
    }
    return keys;
  }

  private static allocate(ctx: CudaContext, N: number, groups: number, headDim: number): GpuKeys {
    const v = emptyTensor(ctx, [groups, N, headDim], 'f32');
    const n2 = emptyTensor(ctx, [N], 'f32');
    return new GpuKeys(ctx, v, n2, N, groups, headDim);
  }

  private checkFinite(bad: Tensor, what: string): void {
    const count = downloadFrom(this.ctx, bad, new Int32Array(1));
    if (count[0]! > 0) {
      throw new CommvqError(`${what}: ${count[0]} tokens hold NaN or infinite values`, 'collect the keys again; the model produced non-finite activations');
    }
  }

  /** Group g's V f32 [N, D] (a view). */
  group(g: number): CudaTensor {
    return this.v.rows(g, 1).view(0, [this.tokens, this.headDim]);
  }

  dispose(): void {
    this.ctx.synchronize();
    this.v.dispose();
    this.n2.dispose();
  }
}
