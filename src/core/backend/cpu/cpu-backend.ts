import type { AttentionShape, Backend, HostStaging, RandomOptions, RopeTable } from '../backend.js';
import { SeededRandom } from '../../model/seeded-random.js';
import { bytesPerElement, fromFloat32Array, toFloat32Array, viewBytes, type DType, type HostArray } from '../../tensor/dtype.js';
import { numel, sameShape, shapeString, type Shape } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import { argmaxRowsF32, attentionF32, linearF32, ropeF32, rmsNormF32, swigluF32 } from './cpu-ops.js';
import { asCpu, CpuTensor } from './cpu-tensor.js';

/**
 * The reference backend: plain TypeScript loops over host arrays, f32 activations, wider-than-f32 accumulation.
 * Weights may be stored in bf16 or f16; ops decode them to f32 on the fly.
 *
 *   const cpu = new CpuBackend();
 *   const y = cpu.linear(cpu.fromArray([1, 2], [1, 2], 'f32'), cpu.fromArray([1, 0, 0, 1], [2, 2], 'bf16'));
 */
export class CpuBackend implements Backend {
  readonly device = 'cpu';
  readonly activationDType: DType = 'f32';
  private bytesInUse = 0;
  private peakBytes = 0;

  fromArray(values: ArrayLike<number>, shape: Shape, dtype: DType): Tensor {
    return this.make(shape, dtype, fromFloat32Array(values, dtype));
  }

  fromBytes(bytes: Uint8Array, shape: Shape, dtype: DType): Tensor {
    const view = viewBytes(bytes, dtype);
    // own the storage: the caller's buffer may be reused
    return this.make(shape, dtype, view.buffer === bytes.buffer ? view.slice() : view);
  }

  zeros(shape: Shape, dtype: DType): Tensor {
    return this.make(shape, dtype, fromFloat32Array(new Float32Array(numel(shape)), dtype));
  }

  toFloat32(t: Tensor): Float32Array {
    const c = asCpu(t);
    return toFloat32Array(c.data, c.dtype).slice();
  }

  toHost(t: Tensor): HostArray {
    return asCpu(t).data.slice();
  }

  allocStaging(bytes: number): HostStaging {
    return { bytes: new Uint8Array(bytes), dispose() {} };
  }

  downloadAsync(t: Tensor, dst: Uint8Array): void {
    const src = asCpu(t).data;
    dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  }

  synchronize(): void {
    // CPU ops complete when they return
  }

  upload(dst: Tensor, values: ArrayLike<number>): void {
    const d = asCpu(dst);
    if (values.length !== d.data.length) throw new Error(`upload: ${values.length} values for ${shapeString(d.shape)}`);
    d.data.set(fromFloat32Array(values, d.dtype));
  }

  scatterRows(dst: Tensor, rows: Tensor, src: Tensor): void {
    const index = asCpu(rows).data;
    const s = asCpu(src);
    const F = last(s.shape);
    index.forEach((row, i) => this.writeRows(dst, row, this.make([1, F], s.dtype, s.data.subarray(i * F, (i + 1) * F))));
  }

  writeRows(dst: Tensor, row: number, src: Tensor): void {
    const d = asCpu(dst);
    const s = asCpu(src);
    const F = d.shape[d.shape.length - 1]!;
    const rows = numel(s.shape) / F;
    if (row < 0 || row + rows > d.shape[0]!) throw new Error(`writeRows: rows ${row}..${row + rows} outside ${shapeString(d.shape)}`);
    const values = s.dtype === d.dtype ? s.data : fromFloat32Array(toFloat32Array(s.data, s.dtype), d.dtype);
    d.data.set(values, row * F);
  }

  sliceRows(x: Tensor, start: number, end: number): Tensor {
    const c = asCpu(x);
    const F = numel(c.shape) / c.shape[0]!;
    return this.make([end - start, ...c.shape.slice(1)], c.dtype, c.data.slice(start * F, end * F));
  }

  memory(): { bytesInUse: number; peakBytes: number } {
    return { bytesInUse: this.bytesInUse, peakBytes: this.peakBytes };
  }

  randomTensor(shape: Shape, dtype: 'f32' | 'bf16', options: RandomOptions): Tensor {
    const rng = new SeededRandom(options.seed);
    const values = new Float32Array(numel(shape));
    if ((options.distribution ?? 'normal') === 'normal') {
      for (let i = 0; i < values.length; i++) values[i] = (options.mean ?? 0) + (options.std ?? 1) * rng.normal();
    } else {
      const low = options.low ?? 0;
      for (let i = 0; i < values.length; i++) values[i] = low + ((options.high ?? 1) - low) * rng.uniform();
    }
    return this.make(shape, dtype, fromFloat32Array(values, dtype));
  }

  embedding(table: Tensor, idsTensor: Tensor): Tensor {
    const ids = asCpu(idsTensor).data;
    const t = asCpu(table);
    const [V, F] = t.shape as [number, number];
    const values = toFloat32Array(t.data, t.dtype);
    const out = new Float32Array(ids.length * F);
    ids.forEach((id, i) => {
      if (id < 0 || id >= V) throw new Error(`embedding: token id ${id} outside vocabulary of ${V}`);
      out.set(values.subarray(id * F, (id + 1) * F), i * F);
    });
    return this.f32([ids.length, F], out);
  }

  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const F = last(x.shape);
    return this.f32(x.shape, rmsNormF32(this.values(x), this.values(weight), eps, F));
  }

  linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
    const [outF, inF] = weight.shape as [number, number];
    if (last(x.shape) !== inF) throw new Error(`linear: x ${shapeString(x.shape)} does not match weight ${shapeString(weight.shape)}`);
    const T = numel(x.shape) / inF;
    return this.f32([T, outF], linearF32(this.values(x), this.values(weight), bias && this.values(bias), T, inF, outF));
  }

  add(a: Tensor, b: Tensor): Tensor {
    sameShapes('add', a, b);
    const x = this.values(a);
    const y = this.values(b);
    return this.f32(a.shape, x.map((v, i) => v + y[i]!));
  }

  swiglu(gate: Tensor, up: Tensor): Tensor {
    sameShapes('swiglu', gate, up);
    return this.f32(gate.shape, swigluF32(this.values(gate), this.values(up)));
  }

  rope(x: Tensor, positions: Tensor, rope: RopeTable): Tensor {
    const pos = asCpu(positions).data as Int32Array;
    if (x.shape[0] !== pos.length) throw new Error(`rope: ${pos.length} positions for ${x.shape[0]} rows`);
    return this.f32(x.shape, ropeF32(this.values(x), pos, rope));
  }

  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape, lengths?: Tensor): Tensor {
    const [qStart, kvLength] = lengths ? asCpu(lengths).data : [shape.qStart, shape.kvLength];
    const width = shape.kvHeads * shape.headDim;
    const kv = (t: Tensor) => this.values(t).subarray(0, kvLength! * width);
    return this.f32(q.shape, attentionF32(this.values(q), kv(k), kv(v), { ...shape, qStart: qStart!, kvLength: kvLength! }));
  }

  argmaxRows(x: Tensor): Int32Array {
    return argmaxRowsF32(this.values(x), last(x.shape));
  }

  cast(x: Tensor, dtype: DType): Tensor {
    return this.make(x.shape, dtype, fromFloat32Array(this.values(x), dtype));
  }

  /** The tensor's values as f32 (no copy for f32 tensors). */
  private values(t: Tensor): Float32Array {
    const c = asCpu(t);
    return toFloat32Array(c.data, c.dtype);
  }

  private f32(shape: Shape, data: Float32Array): Tensor {
    return this.make(shape, 'f32', data);
  }

  private make(shape: Shape, dtype: DType, data: HostArray): Tensor {
    const size = data.length * bytesPerElement(dtype);
    this.bytesInUse += size;
    this.peakBytes = Math.max(this.peakBytes, this.bytesInUse);
    return new CpuTensor(shape, dtype, data, () => (this.bytesInUse -= size));
  }
}

function last(shape: Shape): number {
  return shape[shape.length - 1]!;
}

function sameShapes(op: string, a: Tensor, b: Tensor): void {
  if (!sameShape(a.shape, b.shape)) throw new Error(`${op}: shapes ${shapeString(a.shape)} and ${shapeString(b.shape)} differ`);
}
