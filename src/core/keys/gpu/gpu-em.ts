import type { CudaContext } from '../../backend/cuda/context.js';
import type { DeviceBlock } from '../../backend/cuda/kernels.js';
import { CommvqError } from '../../errors.js';
import type { EmBackend } from '../em.js';
import * as k from './key-launchers.js';

/**
 * EM on the GPU (kernels/key_*.cu), one group at a time, the same loop as the CPU (em.ts drives both). θ handles are
 * device buffers holding θ and its tables; the host reads back one float per E-step (hard_mse, for the stop rule).
 * One owner, `dispose()` frees everything.
 *
 *   const be = new GpuEmBackend(ctx, keys.group(g), keys.n2.ptr, keys.tokens, 128);
 *   const stages = trainGroupEm(be, 11, rngOf);  be.dispose();
 */
export class GpuEmBackend implements EmBackend<DeviceBlock> {
  private readonly blocks: number;
  private readonly stride: number;
  private readonly buffers: DeviceBlock[] = [];
  private readonly partial: DeviceBlock;
  private readonly stats: DeviceBlock;
  private readonly thetas: [DeviceBlock, DeviceBlock, DeviceBlock];
  private readonly vn: DeviceBlock;
  private readonly idx: DeviceBlock;
  private readonly err: DeviceBlock;
  private readonly chunk: number;
  private d2: DeviceBlock | undefined;
  private last: DeviceBlock | undefined;

  constructor(
    private readonly ctx: CudaContext,
    /** device address of V [N, D] (PI, normalised), overwritten by the residual */
    private readonly V: bigint,
    /** device address of n2 [N] */
    private readonly n2: bigint,
    readonly tokens: number,
    readonly headDim: number,
  ) {
    if (headDim !== 64 && headDim !== 128) throw new CommvqError(`GPU key EM supports head_dim 64 and 128, not ${headDim}`, 'use --device cpu');
    this.blocks = k.estepBlocks(ctx);
    this.stride = k.statsStride(headDim);
    const alloc = (bytes: number) => {
      const b = ctx.alloc(bytes);
      this.buffers.push(b);
      return b;
    };
    this.partial = alloc(this.blocks * this.stride * 4);
    this.stats = alloc(this.stride * 4);
    const tf = k.thetaFloats(headDim / 2) * 4;
    this.thetas = [alloc(tf), alloc(tf), alloc(tf)];
    this.vn = alloc(tokens * 4);
    this.idx = alloc(k.GPU_CENTRES * 4);
    this.err = alloc(this.blocks * 4);
    this.chunk = Math.min(tokens, 65536);
  }

  init(indices: Int32Array, invTau: number): DeviceBlock {
    const { ctx, headDim: D } = this;
    if (indices.length !== k.GPU_CENTRES) throw new Error(`GPU EM init: ${indices.length} centres, the kernels need ${k.GPU_CENTRES}`);
    this.d2 ??= this.ctx.alloc(this.chunk * k.GPU_CENTRES * 4);
    ctx.upload(this.idx.ptr, new Uint8Array(indices.buffer, indices.byteOffset, indices.byteLength));
    k.sqnormRows(ctx, this.V, this.vn.ptr, this.tokens, D);
    ctx.memset(this.partial.ptr, 0, this.blocks * this.stride * 4);
    for (let n0 = 0; n0 < this.tokens; n0 += this.chunk) {
      const rows = Math.min(this.chunk, this.tokens - n0);
      k.distGemm(ctx, this.V, this.idx.ptr, this.vn.ptr, this.d2.ptr, n0, rows, k.GPU_CENTRES, D);
      k.estepSoft(ctx, this.blocks, this.V, this.n2, 0n, this.d2.ptr, n0, rows, invTau, this.partial.ptr, D);
    }
    k.reduce(ctx, this.partial.ptr, this.stats.ptr, this.blocks, this.stride);
    this.last = undefined;
    return this.solveInto(this.thetas[0]);
  }

  eStep(theta: DeviceBlock, invTau: number): number {
    const { ctx } = this;
    ctx.memset(this.partial.ptr, 0, this.blocks * this.stride * 4);
    k.estepSoft(ctx, this.blocks, this.V, this.n2, theta.ptr, 0n, 0, this.tokens, invTau, this.partial.ptr, this.headDim);
    k.reduce(ctx, this.partial.ptr, this.stats.ptr, this.blocks, this.stride);
    this.last = theta;
    const hard = new Float32Array(1);
    ctx.download(new Uint8Array(hard.buffer), this.stats.ptr + BigInt((k.GPU_CENTRES + 128 * this.headDim) * 4));
    return hard[0]!;
  }

  mStep(): DeviceBlock {
    return this.solveInto(this.last === this.thetas[0] ? this.thetas[1] : this.thetas[0]);
  }

  keep(theta: DeviceBlock): DeviceBlock {
    const best = this.thetas[2];
    if (theta !== best) this.ctx.copy(best.ptr, theta.ptr, k.thetaFloats(this.headDim / 2) * 4);
    return best;
  }

  residual(theta: DeviceBlock): number {
    this.ctx.memset(this.err.ptr, 0, this.blocks * 4);
    k.assign(this.ctx, this.blocks, this.V, this.n2, theta.ptr, this.tokens, 0n, this.err.ptr, this.headDim);
    const err = new Float32Array(this.blocks);
    this.ctx.download(new Uint8Array(err.buffer), this.err.ptr);
    return err.reduce((a, b) => a + b, 0);
  }

  read(theta: DeviceBlock): Float32Array {
    const out = new Float32Array(64 * this.headDim);
    this.ctx.download(new Uint8Array(out.buffer), theta.ptr);
    return out;
  }

  /** The statistics of the last E-step (w [4096], S [128, D], hard): for tests against the CPU. */
  readStats(): Float32Array {
    const out = new Float32Array(this.stride);
    this.ctx.download(new Uint8Array(out.buffer), this.stats.ptr);
    return out;
  }

  dispose(): void {
    this.ctx.synchronize();
    for (const b of this.buffers.splice(0)) b.free();
    this.d2?.free();
    this.d2 = undefined;
  }

  private solveInto(target: DeviceBlock): DeviceBlock {
    k.solveTheta(this.ctx, this.stats.ptr, target.ptr, this.headDim);
    k.stageTables(this.ctx, target.ptr, this.headDim / 2);
    return target;
  }
}

/** Keys on the GPU, prepared as spec §3.2: V [G, N, D] (PI, normalised) and n2 [N]. One owner: `dispose()`. */
export class GpuKeys {
  private constructor(
    private readonly ctx: CudaContext,
    readonly v: DeviceBlock,
    readonly n2: DeviceBlock,
    readonly tokens: number,
    readonly groups: number,
    readonly headDim: number,
  ) {}

  /**
   * Uploads rows [N, G·D] (HF, pre-RoPE) in chunks and prepares them on the GPU. `scale` [G·D] multiplies each
   * channel first (benchmarks). NaN or infinite values are a CommvqError (`what` names the data).
   */
  static upload(ctx: CudaContext, rows: Float32Array, groups: number, headDim: number, what = 'keys'): GpuKeys {
    const width = groups * headDim;
    const N = rows.length / width;
    const keys = GpuKeys.allocate(ctx, N, groups, headDim);
    const chunkRows = Math.max(1, Math.min(N, Math.floor((64 << 20) / (width * 4))));
    const chunk = ctx.alloc(chunkRows * width * 4);
    const bad = ctx.alloc(4);
    try {
      ctx.memset(bad.ptr, 0, 4);
      for (let n0 = 0; n0 < N; n0 += chunkRows) {
        const T = Math.min(chunkRows, N - n0);
        ctx.upload(chunk.ptr, new Uint8Array(rows.buffer, rows.byteOffset + n0 * width * 4, T * width * 4));
        k.prepareKeys(ctx, chunk.ptr, 0n, keys.v.ptr, keys.n2.ptr, bad.ptr, n0, T, N, groups, headDim);
      }
      keys.checkFinite(bad, what);
    } catch (err) {
      keys.dispose();
      throw err;
    } finally {
      chunk.free();
      bad.free();
    }
    return keys;
  }

  /** Prepares raw f32 rows already on the device [N, G·D], with an optional per-channel scale (or 0n). */
  static fromDevice(ctx: CudaContext, raw: bigint, scale: bigint, N: number, groups: number, headDim: number): GpuKeys {
    const keys = GpuKeys.allocate(ctx, N, groups, headDim);
    const bad = ctx.alloc(4);
    try {
      ctx.memset(bad.ptr, 0, 4);
      k.prepareKeys(ctx, raw, scale, keys.v.ptr, keys.n2.ptr, bad.ptr, 0, N, N, groups, headDim);
      keys.checkFinite(bad, 'keys');
    } finally {
      bad.free();
    }
    return keys;
  }

  private static allocate(ctx: CudaContext, N: number, groups: number, headDim: number): GpuKeys {
    const v = ctx.alloc(groups * N * headDim * 4);
    const n2 = ctx.alloc(N * 4);
    return new GpuKeys(ctx, v, n2, N, groups, headDim);
  }

  private checkFinite(bad: DeviceBlock, what: string): void {
    const count = new Int32Array(1);
    this.ctx.download(new Uint8Array(count.buffer), bad.ptr);
    if (count[0]! > 0) {
      throw new CommvqError(`${what}: ${count[0]} tokens hold NaN or infinite values`, 'collect the keys again; the model produced non-finite activations');
    }
  }

  /** Device address of group g's V [N, D]. */
  group(g: number): bigint {
    return this.v.ptr + BigInt(g * this.tokens * this.headDim * 4);
  }

  dispose(): void {
    this.ctx.synchronize();
    this.v.free();
    this.n2.free();
  }
}
