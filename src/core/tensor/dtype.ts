/**
 * Element types a tensor may hold. Floating types are stored as their IEEE bits: bf16 and f16 as 16-bit words.
 * Conversions round to nearest even, as PyTorch's `.to(torch.bfloat16)` does.
 */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u16' | 'u8';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'u16', 'u8'];

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'bf16':
    case 'f16':
    case 'u16':
      return 2;
    case 'u8':
      return 1;
  }
}

/** Host storage of each dtype: 16-bit floats live as their bit patterns in a Uint16Array. */
export type HostArray = Float32Array | Int32Array | Uint16Array | Uint8Array;

export function allocHost(dtype: DType, length: number): HostArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(length);
    case 'i32':
      return new Int32Array(length);
    case 'bf16':
    case 'f16':
    case 'u16':
      return new Uint16Array(length);
    case 'u8':
      return new Uint8Array(length);
  }
}

/** Views little-endian bytes as the host array of `dtype` (copies when the bytes are not aligned). */
export function viewBytes(bytes: Uint8Array, dtype: DType): HostArray {
  const size = bytesPerElement(dtype);
  let b = bytes;
  if (b.byteOffset % size !== 0) b = new Uint8Array(b); // typed arrays need aligned offsets
  const n = b.byteLength / size;
  switch (dtype) {
    case 'f32':
      return new Float32Array(b.buffer, b.byteOffset, n);
    case 'i32':
      return new Int32Array(b.buffer, b.byteOffset, n);
    case 'bf16':
    case 'f16':
    case 'u16':
      return new Uint16Array(b.buffer, b.byteOffset, n);
    case 'u8':
      return b;
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bf16 bits → f32 value. */
export function bf16ToF32(bits: number): number {
  u32Scratch[0] = bits << 16;
  return f32Scratch[0]!;
}

/** f32 value → bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x007fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f16 bits → f32 value. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The f16 value nearest x (round to nearest even): what a value stored in f16 reads back as. */
export function roundF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

/** f32 value → f16 bits, round to nearest even, overflow to infinity. */
export function f32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let frac = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (frac ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    frac |= 0x800000; // subnormal: shift the implicit bit in, then round
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = frac & ((1 << shift) - 1);
    let m = frac >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = frac >>> 13;
  const rest = frac & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** Decodes any float host array to f32 values (integers are converted by value). */
export function toFloat32Array(data: HostArray, dtype: DType): Float32Array {
  if (dtype === 'f32') return data as Float32Array;
  const out = new Float32Array(data.length);
  if (dtype === 'bf16') {
    const src = data as Uint16Array;
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  } else if (dtype === 'f16') {
    for (let i = 0; i < data.length; i++) out[i] = f16ToF32(data[i]!);
  } else {
    for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  }
  return out;
}

/** Encodes f32 values as `dtype` (float dtypes round to nearest even; integer dtypes truncate). */
export function fromFloat32Array(values: ArrayLike<number>, dtype: DType): HostArray {
  const out = allocHost(dtype, values.length);
  if (dtype === 'bf16') for (let i = 0; i < values.length; i++) out[i] = f32ToBf16(values[i]!);
  else if (dtype === 'f16') for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i]!);
  else for (let i = 0; i < values.length; i++) out[i] = values[i]!;
  return out;
}
