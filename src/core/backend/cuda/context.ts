import koffi from 'koffi';
import { CommvqError } from '../../errors.js';
import { CachingAllocator } from './allocator.js';
import {
  checkCu,
  cudaDeviceCount,
  cudaDriver,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
  CU_MEMHOSTALLOC_PORTABLE,
  CU_STREAM_NON_BLOCKING,
  isOutOfMemory,
  type CudaDriver,
} from './driver.js';
import { CudaGraph, captureGraph } from './graph.js';
import type { CudaContextLike, CudaKernel, DeviceBlock, DeviceInfo, Dim3, KernelArg } from './kernels.js';
import { ModuleLoader } from './modules.js';
import { asBigInt } from './native.js';
import { Staging } from './staging.js';

const MAX_ARGS = 32;
const DEFAULT_SHARED_LIMIT = 48 * 1024;

/**
 * One GPU as the backend uses it: its primary context (shared with any other CUDA user in the process, e.g. cuBLAS),
 * one non-blocking stream that orders all work, the caching allocator, the loaded kernel modules, and a pinned
 * staging ring for small host→device uploads. One owner; `dispose()` frees everything.
 *
 *   const ctx = new CudaContext(0);
 *   const k = ctx.kernel('add', 'add_bf16');
 *   ctx.launch(k, [blocks, 1, 1], [256, 1, 1], 0, [ptr(out), ptr(a), ptr(b), i32(n)]);
 */
export class CudaContext implements CudaContextLike {
  readonly cu: CudaDriver;
  readonly info: DeviceInfo;
  readonly stream: bigint;
  readonly allocator: CachingAllocator;
  private readonly context: bigint;
  private readonly loader: ModuleLoader;
  private readonly staging: Staging;
  private readonly kernels = new Map<string, CudaKernel>();
  private readonly sharedLimit = new Map<bigint, number>();
  // Kernel parameters: cuLaunchKernel takes an array of pointers to each argument's value. Both live in buffers made
  // once: slot i of `argPtrs` always points at slot i of `argValues`, so a launch only writes the values.
  private readonly argValues = Buffer.allocUnsafeSlow(8 * MAX_ARGS);
  private readonly argView = new DataView(this.argValues.buffer, this.argValues.byteOffset, 8 * MAX_ARGS);
  private readonly argPtrs = Buffer.allocUnsafeSlow(8 * MAX_ARGS);
  private readonly argPtrsAddress: bigint;
  private capturing = false;
  private disposed = false;

  constructor(readonly ordinal: number) {
    this.cu = cudaDriver();
    const count = cudaDeviceCount();
    if (ordinal < 0 || ordinal >= count) {
      throw new CommvqError(`no CUDA device ${ordinal}: this machine has ${count}`, `use cuda:0 … cuda:${count - 1}`);
    }
    const dev = [0];
    checkCu(this.cu.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
    const ctx: [unknown] = [null];
    checkCu(this.cu.cuDevicePrimaryCtxRetain(ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
    this.context = asBigInt(ctx[0]);
    checkCu(this.cu.cuCtxSetCurrent(this.context), 'cuCtxSetCurrent');
    this.info = readInfo(this.cu, dev[0]!, ordinal);
    const stream: [unknown] = [null];
    checkCu(this.cu.cuStreamCreate(stream, CU_STREAM_NON_BLOCKING), 'cuStreamCreate');
    this.stream = asBigInt(stream[0]);
    this.allocator = new CachingAllocator({
      malloc: (bytes) => {
        const p = [0];
        const rc = this.cu.cuMemAlloc(p, bytes) as number;
        if (isOutOfMemory(rc)) return null;
        checkCu(rc, 'cuMemAlloc');
        return asBigInt(p[0]);
      },
      free: (p) => checkCu(this.cu.cuMemFree(p), 'cuMemFree'),
    });
    this.loader = new ModuleLoader(this.cu, this.info.computeCapability);
    const base = koffi.address(this.argValues);
    for (let i = 0; i < MAX_ARGS; i++) this.argPtrs.writeBigUInt64LE(base + BigInt(8 * i), 8 * i);
    this.argPtrsAddress = koffi.address(this.argPtrs);
    this.staging = new Staging(this);
  }

  kernel(module: string, name: string): CudaKernel {
    const key = `${module}:${name}`;
    let kernel = this.kernels.get(key);
    if (!kernel) {
      const fn: [unknown] = [null];
      checkCu(this.cu.cuModuleGetFunction(fn, this.loader.module(module), name), `cuModuleGetFunction(${key})`);
      kernel = { module, name, handle: asBigInt(fn[0]) };
      this.kernels.set(key, kernel);
    }
    return kernel;
  }

  launch(kernel: CudaKernel, grid: Dim3, block: Dim3, sharedBytes: number, args: readonly KernelArg[], stream?: bigint): void {
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) return; // empty tensor: nothing to do
    if (args.length > MAX_ARGS) throw new Error(`${kernel.name}: ${args.length} arguments, at most ${MAX_ARGS}`);
    if (sharedBytes > DEFAULT_SHARED_LIMIT) this.allowShared(kernel, sharedBytes);
    const v = this.argView;
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const at = 8 * i;
      switch (a.kind) {
        case 'ptr':
        case 'i64':
          v.setBigUint64(at, BigInt.asUintN(64, a.value), true);
          break;
        case 'i32':
          v.setInt32(at, a.value, true);
          break;
        case 'u32':
          v.setUint32(at, a.value, true);
          break;
        case 'f32':
          v.setFloat32(at, a.value, true);
          break;
      }
    }
    const rc = this.cu.cuLaunchKernel(
      kernel.handle, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes,
      stream ?? this.stream, this.argPtrsAddress, null,
    ) as number;
    checkCu(rc, `cuLaunchKernel(${kernel.module}:${kernel.name} grid [${grid}] block [${block}] shared ${sharedBytes})`);
  }

  alloc(bytes: number): DeviceBlock {
    return this.allocator.alloc(bytes);
  }

  /** Copies host bytes to device memory, enqueued on the stream (returns once the host bytes were read). */
  upload(dst: bigint, bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.assertNotCapturing('a host→device copy');
    checkCu(this.cu.cuMemcpyHtoDAsync(dst, bytes, bytes.byteLength, this.stream), 'cuMemcpyHtoDAsync');
  }

  /** A device copy of small host bytes (ids, positions) through the pinned ring; valid for work enqueued next. */
  stage(bytes: Uint8Array): bigint {
    this.assertNotCapturing('a host array argument');
    return this.staging.put(bytes);
  }

  /** Pinned host memory of `bytes`, viewed as a Uint8Array; freed by `dispose()`. */
  allocPinned(bytes: number): { bytes: Uint8Array; dispose(): void } {
    const p: [unknown] = [null];
    checkCu(this.cu.cuMemHostAlloc(p, Math.max(1, bytes), CU_MEMHOSTALLOC_PORTABLE), 'cuMemHostAlloc');
    const ptr = asBigInt(p[0]);
    let live = true;
    return {
      bytes: new Uint8Array(koffi.view(ptr, bytes)),
      dispose: () => {
        if (!live) return;
        live = false;
        this.synchronize(); // a copy into it may still be running
        this.cu.cuMemFreeHost(ptr);
      },
    };
  }

  /** Enqueues a device→host copy (asynchronous when `dst` is pinned); done after `synchronize()`. */
  downloadAsync(dst: Uint8Array, src: bigint): void {
    if (dst.byteLength === 0) return;
    this.assertNotCapturing('a device→host copy');
    checkCu(this.cu.cuMemcpyDtoHAsync(dst, src, dst.byteLength, this.stream), 'cuMemcpyDtoHAsync');
  }

  /** Waits for the stream, then copies device memory to `dst`. */
  download(dst: Uint8Array, src: bigint): void {
    if (dst.byteLength === 0) return;
    this.assertNotCapturing('a device→host copy');
    checkCu(this.cu.cuMemcpyDtoHAsync(dst, src, dst.byteLength, this.stream), 'cuMemcpyDtoHAsync');
    this.synchronize();
  }

  copy(dst: bigint, src: bigint, bytes: number): void {
    if (bytes > 0) checkCu(this.cu.cuMemcpyDtoDAsync(dst, src, bytes, this.stream), 'cuMemcpyDtoDAsync');
  }

  memset(dst: bigint, byte: number, bytes: number): void {
    if (bytes > 0) checkCu(this.cu.cuMemsetD8Async(dst, byte, bytes, this.stream), 'cuMemsetD8Async');
  }

  synchronize(): void {
    checkCu(this.cu.cuStreamSynchronize(this.stream), 'cuStreamSynchronize');
  }

  /** Free and total device memory as the driver sees it (all processes). */
  deviceMemory(): { free: number; total: number } {
    const free = [0];
    const total = [0];
    checkCu(this.cu.cuMemGetInfo(free, total), 'cuMemGetInfo');
    return { free: free[0]!, total: total[0]! };
  }

  /** Records everything `fn` enqueues into a CUDA graph (see graph.ts). */
  capture<T>(fn: () => T): { graph: CudaGraph; result: T } {
    this.capturing = true;
    try {
      return captureGraph(this, fn);
    } finally {
      this.capturing = false;
    }
  }

  get isCapturing(): boolean {
    return this.capturing;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cu.cuStreamSynchronize(this.stream);
    this.staging.dispose();
    this.allocator.dispose();
    this.loader.dispose();
    this.cu.cuStreamDestroy(this.stream);
    this.cu.cuDevicePrimaryCtxRelease(this.ordinal);
  }

  private allowShared(kernel: CudaKernel, bytes: number): void {
    if ((this.sharedLimit.get(kernel.handle) ?? DEFAULT_SHARED_LIMIT) >= bytes) return;
    if (bytes > this.info.maxSharedPerBlockOptin) {
      throw new CommvqError(
        `${kernel.name} needs ${bytes} bytes of shared memory; ${this.info.name} allows ${this.info.maxSharedPerBlockOptin}`,
      );
    }
    checkCu(
      this.cu.cuFuncSetAttribute(kernel.handle, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
      `cuFuncSetAttribute(${kernel.name})`,
    );
    this.sharedLimit.set(kernel.handle, bytes);
  }

  private assertNotCapturing(what: string): void {
    if (this.capturing) {
      throw new CommvqError(
        `${what} cannot be recorded into a CUDA graph`,
        'inside captureGraph pass ids and positions as device tensors and read results after replay',
      );
    }
  }
}

function readInfo(cu: CudaDriver, dev: number, ordinal: number): DeviceInfo {
  const attr = (a: number): number => {
    const v = [0];
    checkCu(cu.cuDeviceGetAttribute(v, a, dev), 'cuDeviceGetAttribute');
    return v[0]!;
  };
  const name = Buffer.alloc(256);
  checkCu(cu.cuDeviceGetName(name, 256, dev), 'cuDeviceGetName');
  const total = [0];
  checkCu(cu.cuDeviceTotalMem(total, dev), 'cuDeviceTotalMem');
  return {
    ordinal,
    name: name.toString('utf8', 0, name.indexOf(0)),
    computeCapability: [attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)],
    smCount: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
    maxSharedPerBlockOptin: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
    totalMemory: total[0]!,
  };
}
