import { check } from '../../errors.js';
import { allocHost, bytesPerElement, fromFloat32Array, toFloat32Array, type DType, type HostArray } from '../../tensor/dtype.js';
import { numel, sameShape, shapeString, type Shape } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { AttentionShape, Backend, HostStaging, RandomOptions, RopeTable } from '../backend.js';
import { CudaContext } from './context.js';
import { CublasLt } from './cublas.js';
import { asCuda, CudaTensor, emptyTensor } from './cuda-tensor.js';
import type { CudaGraph } from './graph.js';
import { launchAttention, type DecodeOptions } from './ops/attention.js';
import * as k from './ops/model.js';
import { CudaTimer } from './timing.js';

export { cudaAvailable } from './driver.js';

/**
 * The GPU backend: bf16 activations, f32 math inside every kernel, cuBLASLt GEMMs with f32 accumulation. Tested op
 * by op against the CPU backend (test/gpu). Ops accept f32/f16 inputs too (cast to bf16 on the GPU first), but a
 * model should store its weights in bf16 (`loadWeights(..., { dtype: 'bf16' })` casts them on the GPU).
 *
 *   const gpu = CudaBackend.create(0);
 *   const y = gpu.linear(gpu.fromArray(x, [T, 4096], 'bf16'), weight);
 *   gpu.dispose();
 */
export class CudaBackend implements Backend {
  readonly device: string;
  readonly activationDType: DType = 'bf16';
  readonly ctx: CudaContext;
  private blasLib: CublasLt | null | undefined;
  /** RoPE frequencies uploaded once per table, so rope inside a captured graph reads device memory only */
  private readonly invFreqs = new Map<Float32Array, Tensor>();

  /** The backend for GPU `ordinal`; a CommvqError when there is no driver or no such GPU. */
  static create(ordinal = 0): CudaBackend {
    return new CudaBackend(ordinal);
  }

  constructor(ordinal = 0) {
    this.ctx = new CudaContext(ordinal);
    this.device = `cuda:${ordinal}`;
  }

  // ---- memory --------------------------------------------------------------------------------------------------

  fromArray(values: ArrayLike<number>, shape: Shape, dtype: DType): Tensor {
    check(values.length === numel(shape), `fromArray: ${values.length} values for shape ${shapeString(shape)}`);
    return this.uploadNew(shape, dtype, hostBytes(fromFloat32Array(values, dtype)));
  }

  fromBytes(bytes: Uint8Array, shape: Shape, dtype: DType): Tensor {
    const want = numel(shape) * bytesPerElement(dtype);
    check(bytes.byteLength === want, `fromBytes: ${bytes.byteLength} bytes for ${dtype} ${shapeString(shape)} (${want})`);
    return this.uploadNew(shape, dtype, bytes);
  }

  /** Pinned host memory: device→host copies into it run at the bus's speed and stay asynchronous. */
  allocStaging(bytes: number): HostStaging {
    return this.ctx.allocPinned(bytes);
  }

  downloadAsync(t: Tensor, dst: Uint8Array): void {
    const c = this.own(t, 'downloadAsync');
    check(dst.byteLength === c.byteLength, () => `downloadAsync: ${dst.byteLength} bytes for a tensor of ${c.byteLength}`);
    this.ctx.downloadAsync(dst, c.ptr);
  }

  upload(dst: Tensor, values: ArrayLike<number>): void {
    const d = this.own(dst, 'upload');
    check(values.length === d.numel, () => `upload: ${values.length} values for ${shapeString(d.shape)}`);
    this.ctx.upload(d.ptr, hostBytes(fromFloat32Array(values, d.dtype)));
  }

  scatterRows(dst: Tensor, rows: Tensor, src: Tensor): void {
    const d = this.own(dst, 'scatterRows');
    const r = this.own(rows, 'scatterRows');
    check(r.dtype === 'i32', 'scatterRows: rows must be i32');
    check(lastDim(src.shape) === lastDim(d.shape) && numel(src.shape) / lastDim(src.shape) === r.numel,
      () => `scatterRows: ${shapeString(src.shape)} rows for ${r.numel} indices into ${shapeString(d.shape)}`);
    const s = src.dtype === d.dtype ? this.own(src, 'scatterRows') : (this.cast(src, d.dtype) as CudaTensor);
    k.scatterRows(this.ctx, d, r, s);
    if (s !== src) s.dispose(); // stream order keeps the copy alive long enough
  }

  zeros(shape: Shape, dtype: DType): Tensor {
    const t = this.empty(shape, dtype);
    this.ctx.memset(t.ptr, 0, t.byteLength);
    return t;
  }

  toFloat32(t: Tensor): Float32Array {
    const host = this.toHost(t);
    return t.dtype === 'f32' ? (host as Float32Array) : toFloat32Array(host, t.dtype);
  }

  toHost(t: Tensor): HostArray {
    const c = this.own(t, 'toHost');
    const host = allocHost(c.dtype, c.numel);
    this.ctx.download(hostBytes(host), c.ptr);
    return host;
  }

  writeRows(dst: Tensor, row: number, src: Tensor): void {
    const d = this.own(dst, 'writeRows');
    const s = this.own(src, 'writeRows');
    const F = numel(d.shape) / d.shape[0]!; // elements per row of dst
    const rows = s.numel / F;
    check(Number.isInteger(rows), () => `writeRows: ${shapeString(s.shape)} is not whole rows of ${shapeString(d.shape)}`);
    check(row >= 0 && row + rows <= d.shape[0]!, () => `writeRows: rows ${row}..${row + rows} outside ${shapeString(d.shape)}`);
    const at = d.rows(row, rows);
    if (s.dtype === d.dtype) this.ctx.copy(at.ptr, s.ptr, s.byteLength);
    else k.cast(this.ctx, at, s);
  }

  sliceRows(x: Tensor, start: number, end: number): Tensor {
    const c = this.own(x, 'sliceRows');
    check(0 <= start && start <= end && end <= c.shape[0]!, () => `sliceRows: rows ${start}..${end} outside ${shapeString(c.shape)}`);
    const rowBytes = c.byteLength / c.shape[0]!;
    const out = this.empty([end - start, ...c.shape.slice(1)], c.dtype);
    this.ctx.copy(out.ptr, c.ptr + BigInt(start * rowBytes), out.byteLength);
    return out;
  }

  /** Bytes held by tensors, scratch and the backend's own buffers (cuBLASLt workspace, staging ring). */
  memory(): { bytesInUse: number; peakBytes: number } {
    const { bytesInUse, peakBytes } = this.ctx.allocator.memory();
    return { bytesInUse, peakBytes };
  }

  // ---- ops -----------------------------------------------------------------------------------------------------

  /** Ids are read on the device and not checked there (an id outside [0, V) gives a zero row): callers check. */
  embedding(table: Tensor, ids: Tensor): Tensor {
    check(ids.dtype === 'i32', 'embedding: ids must be i32');
    return this.withBf16('embedding', [table], ([t]) => {
      const out = this.empty([numel(ids.shape), table.shape[1]!], 'bf16');
      k.embedding(this.ctx, out, t!, this.own(ids, 'embedding'));
      return out;
    });
  }

  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const F = lastDim(x.shape);
    check(numel(weight.shape) === F, () => `rmsNorm: weight ${shapeString(weight.shape)} for x ${shapeString(x.shape)}`);
    return this.withBf16('rmsNorm', [x, weight], ([xp, wp]) => {
      const out = this.empty(x.shape, 'bf16');
      k.rmsNorm(this.ctx, out, xp!, wp!, eps);
      return out;
    });
  }

  linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
    const [outF, inF] = weight.shape as [number, number];
    check(lastDim(x.shape) === inF, () => `linear: x ${shapeString(x.shape)} does not match weight ${shapeString(weight.shape)}`);
    check(!bias || numel(bias.shape) === outF, () => `linear: bias ${shapeString(bias!.shape)} for ${outF} outputs`);
    const T = numel(x.shape) / inF;
    return this.withBf16('linear', bias ? [x, weight, bias] : [x, weight], ([xp, wp, bp]) => {
      const out = this.empty([T, outF], 'bf16');
      if (T > 0 && !this.blas()?.linear(out.ptr, xp!.ptr, wp!.ptr, T, inF, outF)) k.gemmFallback(this.ctx, out, xp!, wp!);
      if (bp !== undefined) k.biasAdd(this.ctx, out, out, bp);
      return out;
    });
  }

  add(a: Tensor, b: Tensor): Tensor {
    sameShapes('add', a, b);
    return this.withBf16('add', [a, b], ([ap, bp]) => {
      const out = this.empty(a.shape, 'bf16');
      k.add(this.ctx, out, ap!, bp!);
      return out;
    });
  }

  swiglu(gate: Tensor, up: Tensor): Tensor {
    sameShapes('swiglu', gate, up);
    return this.withBf16('swiglu', [gate, up], ([gp, up_]) => {
      const out = this.empty(gate.shape, 'bf16');
      k.swiglu(this.ctx, out, gp!, up_!);
      return out;
    });
  }

  rope(x: Tensor, positions: Tensor, rope: RopeTable): Tensor {
    check(positions.dtype === 'i32' && numel(positions.shape) === x.shape[0], () => `rope: positions must be i32 [${x.shape[0]}]`);
    let invFreq = this.invFreqs.get(rope.invFreq);
    if (!invFreq) {
      invFreq = this.fromArray(rope.invFreq, [rope.invFreq.length], 'f32');
      this.invFreqs.set(rope.invFreq, invFreq);
    }
    const T = x.shape[0]!;
    const width = numel(x.shape) / Math.max(1, T);
    check(rope.headDim % 2 === 0 && width % rope.headDim === 0, () => `rope: rows of ${width} are not whole heads of ${rope.headDim}`);
    return this.withBf16('rope', [x], ([xp]) => {
      const out = this.empty(x.shape, 'bf16');
      k.rope(this.ctx, out, xp!, this.own(positions, 'rope'), this.own(invFreq!, 'rope'), rope.headDim, rope.attentionScaling);
      return out;
    });
  }

  /**
   * Causal GQA attention (attention.ts picks the decode or the prefill kernel). `lengths` (a device i32 [2]
   * {qStart, kvLength}) makes a graph-captured decode step read the lengths at replay time.
   */
  attention(q: Tensor, k_: Tensor, v: Tensor, shape: AttentionShape, lengths?: Tensor): Tensor {
    const options: DecodeOptions = lengths ? { lengths: this.own(lengths, 'attention'), maxKvLength: shape.maxKvLength } : {};
    const width = shape.queryHeads * shape.headDim;
    check(lastDim(q.shape) === width, () => `attention: q ${shapeString(q.shape)} for ${shape.queryHeads}×${shape.headDim}`);
    const kvWidth = shape.kvHeads * shape.headDim;
    for (const [name, t] of [['k', k_], ['v', v]] as const) {
      check(
        lastDim(t.shape) === kvWidth && t.shape[0]! >= shape.kvLength,
        () => `attention: ${name} ${shapeString(t.shape)} for ${shape.kvLength} rows of ${kvWidth}`,
      );
    }
    const qRows = numel(q.shape) / width;
    return this.withBf16('attention', [q, k_, v], ([qp, kp, vp]) => {
      const out = this.empty(q.shape, 'bf16');
      launchAttention(this.ctx, { q: qp!, k: kp!, v: vp!, out }, { ...shape, queryRows: qRows }, options);
      return out;
    });
  }

  argmaxRows(x: Tensor): Int32Array {
    const c = this.own(x, 'argmaxRows');
    const F = lastDim(c.shape);
    const rows = c.numel / F;
    const src = c.dtype === 'bf16' || c.dtype === 'f32' ? c : (this.cast(c, 'f32') as CudaTensor);
    const out = this.empty([rows], 'i32');
    try {
      k.argmaxRows(this.ctx, out, src);
      const ids = new Int32Array(rows);
      this.ctx.download(hostBytes(ids), out.ptr);
      return ids;
    } finally {
      out.dispose();
      if (src !== c) src.dispose();
    }
  }

  cast(x: Tensor, dtype: DType): Tensor {
    const c = this.own(x, 'cast');
    const out = this.empty(c.shape, dtype);
    if (c.dtype === dtype) this.ctx.copy(out.ptr, c.ptr, c.byteLength);
    else k.cast(this.ctx, out, c);
    return out;
  }

  // ---- beyond the Backend interface ----------------------------------------------------------------------------

  /** Row softmax of x [R, F] (f32 or bf16) at `temperature`, as f32 probabilities for sampling. */
  softmax(x: Tensor, temperature = 1): Tensor {
    const c = this.own(x, 'softmax');
    check(temperature > 0, 'softmax: temperature must be positive');
    const src = c.dtype === 'bf16' || c.dtype === 'f32' ? c : (this.cast(c, 'f32') as CudaTensor);
    const out = this.empty(c.shape, 'f32');
    k.softmaxRows(this.ctx, out, src, 1 / temperature);
    if (src !== c) src.dispose();
    return out;
  }

  /** Overwrites an f32 or bf16 tensor with seeded random values made on the GPU (no host copy). */
  fillRandom(t: Tensor, options: RandomOptions): void {
    const c = this.own(t, 'fillRandom');
    check(c.dtype === 'f32' || c.dtype === 'bf16', `fillRandom: ${c.dtype} tensors are not supported (f32 or bf16)`);
    const normal = (options.distribution ?? 'normal') === 'normal';
    const a = normal ? (options.mean ?? 0) : (options.low ?? 0);
    const b = normal ? (options.std ?? 1) : (options.high ?? 1);
    k.fillRandom(this.ctx, c, normal ? 'normal' : 'uniform', BigInt(options.seed), a, b);
  }

  /** A new tensor of seeded random values: `randomTensor([4096, 4096], 'bf16', { seed: 1, std: 0.02 })`. */
  randomTensor(shape: Shape, dtype: 'f32' | 'bf16', options: RandomOptions): Tensor {
    const t = this.empty(shape, dtype);
    this.fillRandom(t, options);
    return t;
  }

  /**
   * Records the GPU work `fn` enqueues (e.g. one decode step) into a graph replayed with `graph.replay()`. Inside
   * `fn`, every input must be on the device (e.g. a model's StepInputs, updated with `upload` between replays): host
   * arrays cannot be recorded. See graph.ts for what a replay reuses.
   */
  captureGraph<T>(fn: () => T): { graph: CudaGraph; result: T } {
    return this.ctx.capture(fn);
  }

  /** Milliseconds of GPU time the work enqueued by `fn` takes (CUDA events around it; waits for the end). */
  timeMs(fn: () => void): number {
    const timer = new CudaTimer(this.ctx);
    try {
      timer.start();
      fn();
      return timer.stop();
    } finally {
      timer.dispose();
    }
  }

  /** Waits until all enqueued work is done. */
  synchronize(): void {
    this.ctx.synchronize();
  }

  /** Gives cached (free) blocks back to the driver, e.g. before measuring memory with another tool. */
  releaseCached(): void {
    this.ctx.synchronize();
    this.ctx.allocator.releaseCached();
  }

  /** Starts a new peak measurement from the bytes in use now. */
  resetPeak(): void {
    this.ctx.allocator.resetPeak();
  }

  /** Frees every GPU resource of this backend; its tensors become invalid. */
  dispose(): void {
    this.invFreqs.forEach((t) => t.dispose());
    this.invFreqs.clear();
    this.blasLib?.dispose();
    this.blasLib = undefined;
    this.ctx.dispose();
  }

  // ---- helpers -------------------------------------------------------------------------------------------------

  /**
   * The cuBLASLt handle (and its one 32 MiB workspace) behind `linear`; null where cuBLASLt is missing or
   * COMMVQ_GEMM=fallback. Other ops on this backend's stream may run their GEMMs through it too: work on one stream
   * runs in order, so the workspace is never used twice at once.
   */
  blas(): CublasLt | null {
    if (this.blasLib === undefined) this.blasLib = process.env['COMMVQ_GEMM'] === 'fallback' ? null : CublasLt.tryCreate(this.ctx);
    return this.blasLib;
  }

  private empty(shape: Shape, dtype: DType): CudaTensor {
    return emptyTensor(this.ctx, shape, dtype);
  }

  private uploadNew(shape: Shape, dtype: DType, bytes: Uint8Array): CudaTensor {
    const t = this.empty(shape, dtype);
    this.ctx.upload(t.ptr, bytes);
    return t;
  }

  private own(t: Tensor, op: string): CudaTensor {
    return asCuda(t, this.device, op);
  }

  /** Runs `fn` with each tensor in bf16: bf16 tensors as they are, f32/f16 ones through a temporary bf16 copy. */
  private withBf16<T>(op: string, tensors: Tensor[], fn: (ts: CudaTensor[]) => T): T {
    return k.withDTypes(this.ctx, op, tensors.map((t) => [t, 'bf16'] as const), fn);
  }
}

/** The bytes of a host array (no copy). */
function hostBytes(a: HostArray | Int32Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function lastDim(shape: Shape): number {
  return shape[shape.length - 1]!;
}

function sameShapes(op: string, a: Tensor, b: Tensor): void {
  check(sameShape(a.shape, b.shape), () => `${op}: shapes ${shapeString(a.shape)} and ${shapeString(b.shape)} differ`);
}
