/**
 * A CUDA context and backend emulated on the host, for CPU tests of the peer caches' device code paths
 * (device-row-cache.ts, device-kivi-cache.ts and the launchers of ops/peer-cache.ts): device memory is one host
 * heap addressed by fake pointers, copies and fills act on it, and the kernels the peer caches launch run as host
 * ports of kernels/peer_*.cu that read their arguments in the kernels' own order — so a wrong argument, offset,
 * layout, slot or split shows on the CPU, long before a GPU run. The ports follow the CUDA code (bit extraction from
 * 32-bit words, e4m3 through f16, two-source rows, units and partials, the combine's merge); what they cannot check
 * is CUDA itself (races, alignment faults, register arrays): test/gpu/peer-caches.test.ts does that on a GPU.
 *
 *   const dev = new EmulatedCuda();
 *   const cache = new DeviceKiviCache(dev.backend, shape, 64, 2, { bits: 2, group: 8, residual: 16 });
 */
import type { AttentionShape } from '../../src/core/backend/backend.js';
import { attentionF32 } from '../../src/core/backend/cpu/cpu-ops.js';
import type { CudaBackend } from '../../src/core/backend/cuda/cuda-backend.js';
import { asCuda, CudaTensor } from '../../src/core/backend/cuda/cuda-tensor.js';
import type { CudaContextLike, CudaKernel, DeviceBlock, DeviceInfo, Dim3, KernelArg } from '../../src/core/backend/cuda/kernels.js';
import { roundHalfEven } from '../../src/core/quant/round-half-even.js';
import { bf16ToF32, bytesPerElement, f16ToF32, f32ToBf16, f32ToF16, fromFloat32Array, toFloat32Array, viewBytes, type DType } from '../../src/core/tensor/dtype.js';
import { numel, type Shape } from '../../src/core/tensor/shape.js';
import type { Tensor } from '../../src/core/tensor/tensor.js';

const BASE = 0x100000n;
const ALIGN = 256;

export class EmulatedCuda implements CudaContextLike {
  readonly info: DeviceInfo = { ordinal: 0, name: 'emulated', computeCapability: [9, 0], smCount: 4, maxSharedPerBlockOptin: 232448, totalMemory: 1 << 30 };
  readonly stream = 0n;
  readonly heap: Uint8Array;
  private readonly view: DataView;
  private top = ALIGN;
  private readonly free = new Map<number, number[]>(); // size → offsets
  bytesInUse = 0;
  /** kernel names launched, in order */
  readonly launched: string[] = [];
  readonly backend: CudaBackend;

  constructor(bytes = 64 << 20) {
    this.heap = new Uint8Array(bytes);
    this.view = new DataView(this.heap.buffer);
    this.backend = new EmulatedBackend(this) as unknown as CudaBackend;
  }

  kernel(module: string, name: string): CudaKernel {
    return { module, name, handle: 0n };
  }

  alloc(bytes: number): DeviceBlock {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const at = this.free.get(size)?.pop() ?? this.grow(size);
    this.bytesInUse += size;
    let freed = false;
    return {
      ptr: BASE + BigInt(at),
      bytes,
      free: () => {
        if (freed) return;
        freed = true;
        this.bytesInUse -= size;
        this.heap.fill(0xcd, at, at + size); // freed memory reads as garbage
        (this.free.get(size) ?? this.free.set(size, []).get(size)!).push(at);
      },
    };
  }

  copy(dst: bigint, src: bigint, bytes: number): void {
    const s = this.at(src);
    this.heap.copyWithin(this.at(dst), s, s + bytes);
  }

  memset(dst: bigint, byte: number, bytes: number): void {
    const d = this.at(dst);
    this.heap.fill(byte, d, d + bytes);
  }

  upload(dst: bigint, bytes: Uint8Array): void {
    this.heap.set(bytes, this.at(dst));
  }

  download(dst: Uint8Array, src: bigint): void {
    const s = this.at(src);
    dst.set(this.heap.subarray(s, s + dst.byteLength));
  }

  launch(kernel: CudaKernel, grid: Dim3, block: Dim3, _shared: number, args: readonly KernelArg[]): void {
    this.launched.push(kernel.name);
    const a = new Args(args);
    const name = kernel.name;
    if (name === 'peer_affine_scales') affineScales(this, a, grid[0] * block[0]);
    else if (name === 'peer_affine_codes') affineCodes(this, a, grid[0] * block[0]);
    else if (name === 'peer_fp8_quantize') fp8Quantize(this, a, (grid[0] * block[0]) / 32);
    else if (name === 'peer_dequantize') dequantize(this, a, grid[0] * block[0]);
    else if (name.startsWith('peer_decode_')) peerDecode(this, name, a, grid, block);
    else if (name.startsWith('attention_decode_combine_d')) combine(this, a, grid, Number(name.slice('attention_decode_combine_d'.length)));
    else throw new Error(`the emulator has no kernel ${kernel.module}/${name}`);
  }

  // ---- heap access -------------------------------------------------------------------------------------------------
  at(ptr: bigint): number {
    if (ptr < BASE) throw new Error(`a null or wild pointer ${ptr}`);
    return Number(ptr - BASE);
  }
  u8(ptr: bigint, i: number): number {
    return this.heap[this.at(ptr) + i]!;
  }
  setU8(ptr: bigint, i: number, v: number): void {
    this.heap[this.at(ptr) + i] = v;
  }
  u32(ptr: bigint, i: number): number {
    const o = this.at(ptr) + 4 * i;
    if (o % 4 !== 0) throw new Error(`a misaligned 32-bit load at ${o}`);
    return this.view.getUint32(o, true);
  }
  bf16(ptr: bigint, i: number): number {
    return bf16ToF32(this.view.getUint16(this.at(ptr) + 2 * i, true));
  }
  setBf16(ptr: bigint, i: number, v: number): void {
    this.view.setUint16(this.at(ptr) + 2 * i, f32ToBf16(v), true);
  }
  f16(ptr: bigint, i: number): number {
    return f16ToF32(this.view.getUint16(this.at(ptr) + 2 * i, true));
  }
  setF16Bits(ptr: bigint, i: number, bits: number): void {
    this.view.setUint16(this.at(ptr) + 2 * i, bits, true);
  }
  f32(ptr: bigint, i: number): number {
    return this.view.getFloat32(this.at(ptr) + 4 * i, true);
  }
  setF32(ptr: bigint, i: number, v: number): void {
    this.view.setFloat32(this.at(ptr) + 4 * i, v, true);
  }

  private grow(size: number): number {
    const at = this.top;
    this.top += size;
    if (this.top > this.heap.length) throw new Error('emulated device: out of memory');
    return at;
  }
}

/** The CudaBackend surface the peer caches use, on the emulated heap (activations bf16, attention by attentionF32). */
class EmulatedBackend {
  readonly device = 'cuda:0';
  readonly activationDType: DType = 'bf16';
  constructor(readonly ctx: EmulatedCuda) {}

  private tensor(shape: Shape, dtype: DType): CudaTensor {
    return new CudaTensor([...shape], dtype, this.device, this.ctx.alloc(numel(shape) * bytesPerElement(dtype)));
  }
  zeros(shape: Shape, dtype: DType): Tensor {
    const t = this.tensor(shape, dtype);
    this.ctx.memset(t.ptr, 0, t.byteLength);
    return t;
  }
  fromArray(values: ArrayLike<number>, shape: Shape, dtype: DType): Tensor {
    const t = this.tensor(shape, dtype);
    const host = fromFloat32Array(values, dtype);
    this.ctx.upload(t.ptr, new Uint8Array(host.buffer, host.byteOffset, host.byteLength));
    return t;
  }
  toFloat32(t: Tensor): Float32Array {
    const c = asCuda(t, this.device, 'toFloat32');
    const bytes = new Uint8Array(c.byteLength);
    this.ctx.download(bytes, c.ptr);
    return toFloat32Array(viewBytes(bytes, c.dtype), c.dtype);
  }
  sliceRows(x: Tensor, start: number, end: number): Tensor {
    const c = asCuda(x, this.device, 'sliceRows');
    const out = this.tensor([end - start, ...c.shape.slice(1)], c.dtype);
    const rowBytes = c.byteLength / c.shape[0]!;
    this.ctx.copy(out.ptr, c.ptr + BigInt(start * rowBytes), out.byteLength);
    return out;
  }
  writeRows(dst: Tensor, row: number, src: Tensor): void {
    const d = asCuda(dst, this.device, 'writeRows');
    const s = asCuda(src, this.device, 'writeRows');
    this.ctx.copy(d.ptr + BigInt((row * d.byteLength) / d.shape[0]!), s.ptr, s.byteLength);
  }
  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape): Tensor {
    const o = attentionF32(this.toFloat32(q), this.toFloat32(k), this.toFloat32(v), shape);
    return this.fromArray(o, q.shape, 'bf16');
  }
  memory(): { bytesInUse: number; peakBytes: number } {
    return { bytesInUse: this.ctx.bytesInUse, peakBytes: 0 };
  }
  synchronize(): void {}
}

/** A launch's arguments, read in order as the kernel's signature lists them. */
class Args {
  private i = 0;
  constructor(private readonly args: readonly KernelArg[]) {}
  ptr(): bigint {
    const a = this.args[this.i++]!;
    if (a.kind !== 'ptr') throw new Error(`argument ${this.i - 1} is ${a.kind}, the kernel reads a pointer`);
    return a.value;
  }
  int(): number {
    const a = this.args[this.i++]!;
    if (a.kind !== 'i32') throw new Error(`argument ${this.i - 1} is ${a.kind}, the kernel reads an int`);
    return a.value;
  }
  float(): number {
    const a = this.args[this.i++]!;
    if (a.kind !== 'f32') throw new Error(`argument ${this.i - 1} is ${a.kind}, the kernel reads a float`);
    return Math.fround(a.value);
  }
  done(): void {
    if (this.i !== this.args.length) throw new Error(`${this.args.length} arguments for a kernel that reads ${this.i}`);
  }
}

// ---- peer_formats.cuh ------------------------------------------------------------------------------------------------

interface RowSource {
  a: bigint;
  aBase: number;
  aMod: number;
  split: number;
  b: bigint;
}
const readSource = (a: Args): RowSource => ({ a: a.ptr(), aBase: a.int(), aMod: a.int(), split: a.int(), b: a.ptr() });
/** element c of the row at position p: source_row */
function sourceAt(dev: EmulatedCuda, s: RowSource, p: number, W: number, c: number): number {
  if (p >= s.split) return dev.bf16(s.b, (p - s.split) * W + c);
  const slot = s.aMod > 0 ? (p - s.aBase) % s.aMod : p - s.aBase;
  if (slot < 0) throw new Error(`source row of position ${p}: slot ${slot}`);
  return dev.bf16(s.a, slot * W + c);
}

/** f32_to_e4m3 of peer_formats.cuh, its bit manipulations as written there. */
export function f32ToE4m3Cuda(x: number): number {
  x = Math.fround(x);
  if (Number.isNaN(x)) return 0x7f;
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 24) & 0x80;
  const a = Math.abs(x);
  if (a >= 448) return sign | 0x7e;
  if (a < 2 ** -6) return sign | roundHalfEven(a * 512);
  let e = ((bits >>> 23) & 0xff) - 127;
  let m = roundHalfEven((bits & 0x7fffff) * 2 ** -20);
  if (m === 8) {
    m = 0;
    e++;
  }
  return Math.min(sign | ((e + 7) << 3) | m, sign | 0x7e);
}

/** e4m3x4 of peer_attention_decode.cu: four codes of a word through f16, each value times 2^-8. */
export function e4m3x4Cuda(w: number): number[] {
  w >>>= 0;
  const lo = (((w & 0x80) << 8) | ((w & 0x7f) << 7) | ((w & 0x8000) << 16) | ((w & 0x7f00) << 15)) >>> 0;
  const hi = (((w & 0x800000) >>> 8) | ((w & 0x7f0000) >>> 9) | (w & 0x80000000) | ((w & 0x7f000000) >>> 1)) >>> 0;
  return [f16ToF32(lo & 0xffff), f16ToF32(lo >>> 16), f16ToF32(hi & 0xffff), f16ToF32(hi >>> 16)];
}

// ---- peer_quantize.cu --------------------------------------------------------------------------------------------------

function affineScales(dev: EmulatedCuda, a: Args, threads: number): void {
  const src = readSource(a);
  const [p0, T, W, layout, bits, gs] = [a.int(), a.int(), a.int(), a.int(), a.int(), a.int()];
  const [scales, zeros] = [a.ptr(), a.ptr()];
  a.done();
  const group = 1 << gs;
  const nGroups = (T * W) >> gs;
  if (threads < nGroups) throw new Error(`peer_affine_scales: ${threads} threads for ${nGroups} groups`);
  for (let gid = 0; gid < nGroups; gid++) {
    let mn = Infinity;
    let mx = -Infinity;
    const upd = (v: number) => {
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    };
    let out: number;
    if (layout === 0) {
      const perRow = W >> gs;
      const t = Math.floor(gid / perRow);
      const j = gid % perRow;
      for (let k = 0; k < group; k++) upd(sourceAt(dev, src, p0 + t, W, (j << gs) + k));
      out = (p0 + t) * perRow + j;
    } else {
      const i = Math.floor(gid / W);
      const c = gid % W;
      const first = p0 + (i << gs);
      for (let k = 0; k < group; k++) upd(sourceAt(dev, src, first + k, W, c));
      out = (first >> gs) * W + c;
    }
    const L = 2 ** bits - 1;
    dev.setF16Bits(scales, out, f32ToF16(Math.fround((mx - mn) / L)));
    dev.setF16Bits(zeros, out, f32ToF16(mn));
  }
}

function affineCodes(dev: EmulatedCuda, a: Args, threads: number): void {
  const src = readSource(a);
  const [p0, T, W, layout, bits, gs] = [a.int(), a.int(), a.int(), a.int(), a.int(), a.int()];
  const [scales, zeros, codes] = [a.ptr(), a.ptr(), a.ptr()];
  a.done();
  const rowBytes = (W * bits) / 8;
  if (threads < T * rowBytes) throw new Error(`peer_affine_codes: ${threads} threads for ${T * rowBytes} bytes`);
  const L = 2 ** bits - 1;
  for (let id = 0; id < T * rowBytes; id++) {
    const t = Math.floor(id / rowBytes);
    const byte = id % rowBytes;
    const p = p0 + t;
    let packed = 0;
    for (let e = 0; e < 8 / bits; e++) {
      const c = byte * (8 / bits) + e;
      const g = layout === 0 ? p * (W >> gs) + (c >> gs) : (p >> gs) * W + c;
      const s = dev.f16(scales, g);
      const z = dev.f16(zeros, g);
      const x = sourceAt(dev, src, p, W, c);
      const q = s === 0 ? 0 : Math.min(L, Math.max(0, roundHalfEven(Math.fround(Math.fround(x - z) / s))));
      packed |= q << (e * bits);
    }
    dev.setU8(codes, p * rowBytes + byte, packed);
  }
}

function fp8Quantize(dev: EmulatedCuda, a: Args, warps: number): void {
  const src = readSource(a);
  const [p0, T, Hkv, D] = [a.int(), a.int(), a.int(), a.int()];
  const [codes, scales] = [a.ptr(), a.ptr()];
  a.done();
  const W = Hkv * D;
  if (warps < T * Hkv) throw new Error(`peer_fp8_quantize: ${warps} warps for ${T * Hkv}`);
  for (let w = 0; w < T * Hkv; w++) {
    const t = Math.floor(w / Hkv);
    const h = w % Hkv;
    const p = p0 + t;
    let amax = 0;
    for (let d = 0; d < D; d++) amax = Math.max(amax, Math.abs(sourceAt(dev, src, p, W, h * D + d)));
    const s = Math.fround(amax / 448);
    for (let d = 0; d < D; d++) dev.setU8(codes, p * W + h * D + d, s === 0 ? 0 : f32ToE4m3Cuda(Math.fround(sourceAt(dev, src, p, W, h * D + d) / s)));
    dev.setF32(scales, p * Hkv + h, s);
  }
}

// ---- peer_dequantize.cu --------------------------------------------------------------------------------------------------

function dequantize(dev: EmulatedCuda, a: Args, threads: number): void {
  const [codes, scales, zeros] = [a.ptr(), a.ptr(), a.ptr()];
  const [n, Hkv, D, layout, bits, gs] = [a.int(), a.int(), a.int(), a.int(), a.int(), a.int()];
  const out = a.ptr();
  a.done();
  const W = Hkv * D;
  if (threads < n * W) throw new Error(`peer_dequantize: ${threads} threads for ${n * W} elements`);
  for (let id = 0; id < n * W; id++) {
    const p = Math.floor(id / W);
    const c = id % W;
    const bit = c * bits;
    const q = (dev.u8(codes, p * ((W * bits) / 8) + (bit >> 3)) >> (bit & 7)) & ((1 << bits) - 1);
    let x: number;
    if (layout === 2) x = Math.fround(e4m3ToF32Cuda(q) * dev.f32(scales, p * Hkv + Math.floor(c / D)));
    else {
      const g = layout === 0 ? p * (W >> gs) + (c >> gs) : (p >> gs) * W + c;
      x = Math.fround(q * dev.f16(scales, g) + dev.f16(zeros, g));
    }
    dev.setBf16(out, id, x);
  }
}

/** e4m3_to_f32 of peer_formats.cuh (as e4m3x4 of one code, times 256: the same value). */
function e4m3ToF32Cuda(code: number): number {
  return e4m3x4Cuda(code)[0]! * 256;
}

// ---- peer_attention_decode.cu ---------------------------------------------------------------------------------------------

interface Part {
  codes: bigint;
  scales: bigint;
  zeros: bigint;
  gs: number;
  quantized: number;
  exact: bigint;
  exactBase: number;
  exactMod: number;
}
const readPart = (a: Args): Part => ({ codes: a.ptr(), scales: a.ptr(), zeros: a.ptr(), gs: a.int(), quantized: a.int(), exact: a.ptr(), exactBase: a.int(), exactMod: a.int() });
const exactSlot = (p: Part, j: number) => {
  const slot = p.exactMod > 0 ? (j - p.exactBase) % p.exactMod : j - p.exactBase;
  if (slot < 0) throw new Error(`exact slot ${slot} of key ${j}`);
  return slot;
};

/** k̂_j[d] for d < D of kv head hkv, as key_scores reads it. */
function keyRow(dev: EmulatedCuda, kind: string, k: Part, j: number, hkv: number, Hkv: number, D: number, BITS: number): number[] {
  const W = Hkv * D;
  if (j >= k.quantized) return Array.from({ length: D }, (_, d) => dev.bf16(k.exact, exactSlot(k, j) * W + hkv * D + d));
  const wordsAt = j * ((W * BITS) / 8) + hkv * ((D * BITS) / 8);
  if (wordsAt % 8 !== 0) throw new Error(`key codes of ${j} not 8-byte aligned`);
  const word = (i: number) => dev.u32(k.codes + BigInt(wordsAt), i);
  const mask = BITS === 32 ? 0xffffffff : (1 << BITS) - 1;
  const code = (d: number) => (word(Math.floor((d * BITS) / 32)) >>> ((d * BITS) % 32)) & mask;
  if (kind === 'fp8') {
    const sc = Math.fround(dev.f32(k.scales, j * Hkv + hkv) * 256);
    return Array.from({ length: D }, (_, d) => Math.fround(e4m3x4Cuda(word(Math.floor(d / 4)))[d % 4]! * sc));
  }
  if (kind === 'int4' || kind === 'int2') {
    if (1 << k.gs < 32) throw new Error('token-layout keys with groups under 32');
    const g0 = j * (W >> k.gs) + ((hkv * D) >> k.gs);
    return Array.from({ length: D }, (_, d) => {
      const g = g0 + (((d >> 5) * 32) >> k.gs);
      return Math.fround(code(d) * dev.f16(k.scales, g) + dev.f16(k.zeros, g));
    });
  }
  const r = (j >> k.gs) * W + hkv * D;
  return Array.from({ length: D }, (_, d) => Math.fround(code(d) * dev.f16(k.scales, r + d) + dev.f16(k.zeros, r + d)));
}

/** v̂_j at channels hkv·D + lane·CPL + c, as value_channels reads them. */
function valueLane(dev: EmulatedCuda, kind: string, v: Part, j: number, hkv: number, Hkv: number, D: number, BITS: number, lane: number): number[] {
  const CPL = D / 32;
  const W = Hkv * D;
  const c0 = hkv * D + lane * CPL;
  if (j >= v.quantized) return Array.from({ length: CPL }, (_, c) => dev.bf16(v.exact, exactSlot(v, j) * W + c0 + c));
  const rowBytes = (W * BITS) / 8;
  const word = dev.u32(v.codes + BigInt(j * rowBytes), Math.floor((c0 * BITS) / 32));
  const shift = (c0 * BITS) % 32;
  if (kind === 'fp8') {
    const x = e4m3x4Cuda(word >>> shift);
    const sc = Math.fround(dev.f32(v.scales, j * Hkv + hkv) * 256);
    return Array.from({ length: CPL }, (_, c) => Math.fround(x[c]! * sc));
  }
  const mask = (1 << BITS) - 1;
  const g0 = j * (W >> v.gs);
  return Array.from({ length: CPL }, (_, c) => {
    const g = g0 + ((c0 + c) >> v.gs);
    return Math.fround(((word >>> (shift + c * BITS)) & mask) * dev.f16(v.scales, g) + dev.f16(v.zeros, g));
  });
}

function peerDecode(dev: EmulatedCuda, name: string, a: Args, grid: Dim3, block: Dim3): void {
  const m = /^peer_decode_(int4|int2|kivi2|kivi1|fp8)_d(64|128)_g(4|8)$/.exec(name);
  if (!m) throw new Error(`unknown peer decode kernel ${name}`);
  const kind = m[1]!;
  const D = Number(m[2]);
  const GM = Number(m[3]);
  const BITS = { int4: 4, int2: 2, kivi2: 2, kivi1: 1, fp8: 8 }[kind]!;
  const q = a.ptr();
  const k = readPart(a);
  const v = readPart(a);
  const [n, Hq, Hkv] = [a.int(), a.int(), a.int()];
  const scale = a.float();
  const [unitKeys, nUnits] = [a.int(), a.int()];
  const [partO, partML] = [a.ptr(), a.ptr()];
  a.done();
  const G = Hq / Hkv;
  if (G > GM) throw new Error(`${name} for G = ${G}`);
  if (block[0] !== 128 || grid[1] !== Hkv || grid[0] * 4 < nUnits) throw new Error(`${name}: grid ${grid} and block ${block} do not cover ${nUnits} units of ${Hkv} kv heads`);
  const sl2 = Math.fround(scale * 1.4426950408889634);
  for (let hkv = 0; hkv < Hkv; hkv++) {
    const qs = Array.from({ length: G }, (_, h) => Array.from({ length: D }, (_, d) => dev.bf16(q, (hkv * G + h) * D + d)));
    for (let unit = 0; unit < grid[0] * 4; unit++) {
      const keyBegin = unit * unitKeys;
      if (unit >= nUnits || keyBegin >= n) continue;
      const keyEnd = Math.min(keyBegin + unitKeys, n);
      // the kernel's passes of 32 keys, a lane per key, with its online softmax: m per head, l per lane, acc per channel
      const m = new Array<number>(G).fill(-Infinity);
      const l = Array.from({ length: G }, () => new Float64Array(32));
      const acc = Array.from({ length: G }, () => new Float64Array(D));
      for (let j0 = keyBegin; j0 < keyEnd; j0 += 32) {
        const ps = Array.from({ length: G }, () => new Float64Array(32));
        const rows = Array.from({ length: 32 }, (_, lane) => (j0 + lane < keyEnd ? keyRow(dev, kind, k, j0 + lane, hkv, Hkv, D, BITS) : undefined));
        for (let h = 0; h < G; h++) {
          const s = rows.map((kr) => (kr ? kr.reduce((acc2, x, d) => acc2 + qs[h]![d]! * x, 0) : -Infinity));
          const mNew = Math.max(m[h]!, ...s);
          const alpha = 2 ** ((m[h]! - mNew) * sl2);
          for (let lane = 0; lane < 32; lane++) {
            const p = rows[lane] ? 2 ** ((s[lane]! - mNew) * sl2) : 0;
            l[h]![lane] = l[h]![lane]! * alpha + p;
            ps[h]![lane] = p;
          }
          for (let d = 0; d < D; d++) acc[h]![d] = acc[h]![d]! * alpha;
          m[h] = mNew;
        }
        for (let jj = 0; jj < Math.min(32, keyEnd - j0); jj++) {
          for (let lane = 0; lane < 32; lane++) {
            const x = valueLane(dev, kind, v, j0 + jj, hkv, Hkv, D, BITS, lane);
            for (let h = 0; h < G; h++) x.forEach((xv, c) => (acc[h]![lane * (D / 32) + c] += ps[h]![jj]! * xv));
          }
        }
      }
      for (let h = 0; h < G; h++) {
        const slot = (hkv * nUnits + unit) * G + h;
        dev.setF32(partML, 2 * slot, m[h]! * sl2);
        dev.setF32(partML, 2 * slot + 1, l[h]!.reduce((a2, b2) => a2 + b2, 0));
        for (let d = 0; d < D; d++) dev.setF32(partO, slot * D + d, acc[h]![d]!);
      }
    }
  }
}

function combine(dev: EmulatedCuda, a: Args, grid: Dim3, D: number): void {
  const [partO, partML, out] = [a.ptr(), a.ptr(), a.ptr()];
  const [Tq, Hq, Hkv, qStart, kvLength, unitKeys, nUnits] = [a.int(), a.int(), a.int(), a.int(), a.int(), a.int(), a.int()];
  const meta = a.ptr();
  a.done();
  if (meta !== 0n) throw new Error('the emulated combine reads no device lengths');
  if (grid[0] !== Hq || grid[1] !== Tq) throw new Error(`combine grid ${grid} for ${Hq} heads, ${Tq} rows`);
  const G = Hq / Hkv;
  const RT = Tq * G;
  const kvEnd = Math.min(kvLength, qStart + Tq);
  const nValid = Math.min(nUnits, Math.ceil(kvEnd / unitKeys));
  for (let i = 0; i < Tq; i++) {
    for (let h = 0; h < Hq; h++) {
      const base = Math.floor(h / G) * nUnits * RT + i * G + (h % G);
      let M = -Infinity;
      for (let u = 0; u < nValid; u++) M = Math.max(M, dev.f32(partML, 2 * (base + u * RT)));
      let l = 0;
      const o = new Float64Array(D);
      for (let u = 0; u < nValid; u++) {
        const slot = base + u * RT;
        const w = 2 ** (dev.f32(partML, 2 * slot) - M);
        l += w * dev.f32(partML, 2 * slot + 1);
        for (let d = 0; d < D; d++) o[d] += w * dev.f32(partO, slot * D + d);
      }
      for (let d = 0; d < D; d++) dev.setBf16(out, (i * Hq + h) * D + d, l > 0 ? o[d]! / l : 0);
    }
  }
}
