/**
 * The kernel launcher API of the CUDA backend: what a launcher module in `ops/` that owns a `kernels/<module>.cu`
 * needs to run it.
 *
 * A kernel is named by its module (the `.cu` file name without extension) and its `extern "C"` entry point. The
 * context loads `build/kernels/<module>.fatbin` (made by `scripts/build-kernels.mjs`), or compiles the `.cu` with
 * NVRTC at run time when no fatbin exists, once per module; launches go on the context's stream unless one is given.
 * Arguments are typed so that each is packed with the width the kernel expects.
 *
 * Example (a launcher in `ops/attention.ts`):
 *
 *     import { f32, i32, ptr, type CudaContextLike } from '../kernels.js';
 *     const kernel = ctx.kernel('attention_decode', 'attention_decode_bf16');
 *     ctx.launch(kernel, [queryHeads, splits, 1], [128, 1, 1], sharedBytes,
 *       [ptr(q.ptr), ptr(k.ptr), ptr(v.ptr), ptr(out.ptr), i32(kvLength), f32(1 / Math.sqrt(headDim))], stream);
 *
 * Dynamic shared memory over 48 KiB is allowed: `launch` raises the kernel's limit (cuFuncSetAttribute) the first
 * time it is asked for more, up to `ctx.info.maxSharedPerBlockOptin`.
 */

/** One kernel argument, packed as its C type: `ptr` a device pointer (8 bytes), `i32`/`u32`/`f32` 4 bytes, `i64` 8. */
export type KernelArg =
  | { readonly kind: 'ptr'; readonly value: bigint }
  | { readonly kind: 'i32' | 'u32' | 'f32'; readonly value: number }
  | { readonly kind: 'i64'; readonly value: bigint };

/** A device pointer argument (`const T*` / `T*` in the kernel). */
export const ptr = (value: bigint): KernelArg => ({ kind: 'ptr', value });
/** An `int` argument. */
export const i32 = (value: number): KernelArg => ({ kind: 'i32', value });
/** An `unsigned int` argument. */
export const u32 = (value: number): KernelArg => ({ kind: 'u32', value });
/** A `float` argument. */
export const f32 = (value: number): KernelArg => ({ kind: 'f32', value });
/** A `long long` argument. */
export const i64 = (value: bigint | number): KernelArg => ({ kind: 'i64', value: BigInt(value) });

/** A loaded `extern "C" __global__` function. */
export interface CudaKernel {
  readonly module: string;
  readonly name: string;
  /** CUfunction handle */
  readonly handle: bigint;
}

export type Dim3 = readonly [number, number, number];

/** What the device can do, read once at context creation. */
export interface DeviceInfo {
  readonly ordinal: number;
  readonly name: string;
  /** [major, minor], e.g. [9, 0] for an H100 */
  readonly computeCapability: readonly [number, number];
  readonly smCount: number;
  /** the most dynamic shared memory one block may opt in to, in bytes */
  readonly maxSharedPerBlockOptin: number;
  readonly totalMemory: number;
}

/** A block of device memory from the caching allocator; `free()` returns it to the cache. */
export interface DeviceBlock {
  readonly ptr: bigint;
  /** the bytes asked for (the block may be larger) */
  readonly bytes: number;
  free(): void;
}

/**
 * The part of the CUDA context that kernel launchers (ops/) and the code above them use: launches, scratch memory,
 * and copies, all ordered on one stream. `CudaContext` (context.ts) implements it; tests of launch plans fake it.
 */
export interface CudaContextLike {
  readonly info: DeviceInfo;
  /** the CUstream every backend op is ordered on */
  readonly stream: bigint;
  /** The kernel `name` of module `module` (`kernels/<module>.cu`), loaded once and cached. */
  kernel(module: string, name: string): CudaKernel;
  /** Enqueues one launch on `stream` (default: the context's stream). Grid and block are [x, y, z]. */
  launch(kernel: CudaKernel, grid: Dim3, block: Dim3, sharedBytes: number, args: readonly KernelArg[], stream?: bigint): void;
  /** Scratch memory from the caching allocator (counted in `memory()`); free it when the work using it is queued. */
  alloc(bytes: number): DeviceBlock;
  /** Enqueues a device-to-device copy of `bytes`. */
  copy(dst: bigint, src: bigint, bytes: number): void;
  /** Enqueues setting `bytes` bytes at `dst` to `byte`. */
  memset(dst: bigint, byte: number, bytes: number): void;
  /** Enqueues a copy of host bytes to `dst` (returns once the host bytes were read). */
  upload(dst: bigint, bytes: Uint8Array): void;
  /** Waits for the stream, then copies device memory at `src` to `dst`. */
  download(dst: Uint8Array, src: bigint): void;
}
