import { CommvqError } from '../../errors.js';
import { declare, loadFirst, type Library, type NativeFunction } from './native.js';

/**
 * koffi bindings to the CUDA driver API (`libcuda.so.1`), the one library every machine with an NVIDIA driver has.
 * The driver API is used rather than the runtime so nothing beyond the driver is needed to run kernels; cuBLASLt and
 * NVRTC are loaded separately. Handles (CUcontext, CUstream, ...) are bigints; device pointers are bigints too.
 * Every call returns a CUresult that `checkCu` turns into a CommvqError naming the call and the CUDA error.
 */

// Enum values from cuda.h (stable across CUDA 12 and 13).
export const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
export const CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
export const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
export const CU_STREAM_NON_BLOCKING = 1;
export const CU_EVENT_DEFAULT = 0;
export const CU_EVENT_DISABLE_TIMING = 2;
export const CU_STREAM_CAPTURE_MODE_RELAXED = 2;
export const CU_MEMHOSTALLOC_PORTABLE = 1;
const CUDA_ERROR_OUT_OF_MEMORY = 2;

/** The bound driver functions; each returns a CUresult (0 = success). */
export interface CudaDriver {
  readonly lib: Library;
  cuInit: NativeFunction;
  cuDriverGetVersion: NativeFunction;
  cuDeviceGetCount: NativeFunction;
  cuDeviceGet: NativeFunction;
  cuDeviceGetName: NativeFunction;
  cuDeviceGetAttribute: NativeFunction;
  cuDeviceTotalMem: NativeFunction;
  cuDevicePrimaryCtxRetain: NativeFunction;
  cuDevicePrimaryCtxRelease: NativeFunction;
  cuCtxSetCurrent: NativeFunction;
  cuCtxSynchronize: NativeFunction;
  cuMemAlloc: NativeFunction;
  cuMemFree: NativeFunction;
  cuMemGetInfo: NativeFunction;
  cuMemHostAlloc: NativeFunction;
  cuMemFreeHost: NativeFunction;
  cuMemcpyHtoD: NativeFunction;
  cuMemcpyDtoH: NativeFunction;
  cuMemcpyDtoD: NativeFunction;
  cuMemcpyHtoDAsync: NativeFunction;
  cuMemcpyDtoHAsync: NativeFunction;
  cuMemcpyDtoDAsync: NativeFunction;
  cuMemsetD8: NativeFunction;
  cuMemsetD8Async: NativeFunction;
  cuStreamCreate: NativeFunction;
  cuStreamDestroy: NativeFunction;
  cuStreamSynchronize: NativeFunction;
  cuStreamWaitEvent: NativeFunction;
  cuEventCreate: NativeFunction;
  cuEventRecord: NativeFunction;
  cuEventSynchronize: NativeFunction;
  cuEventElapsedTime: NativeFunction;
  cuEventDestroy: NativeFunction;
  cuModuleLoadData: NativeFunction;
  cuModuleUnload: NativeFunction;
  cuModuleGetFunction: NativeFunction;
  cuLaunchKernel: NativeFunction;
  cuFuncSetAttribute: NativeFunction;
  cuStreamBeginCapture: NativeFunction;
  cuStreamEndCapture: NativeFunction;
  cuGraphInstantiateWithFlags: NativeFunction;
  cuGraphLaunch: NativeFunction;
  cuGraphExecDestroy: NativeFunction;
  cuGraphDestroy: NativeFunction;
  cuGetErrorName: NativeFunction;
  cuGetErrorString: NativeFunction;
}

function bind(lib: Library): CudaDriver {
  const d = (proto: string, suffixes: readonly string[] = []): NativeFunction => declare(lib, proto, suffixes);
  return {
    lib,
    cuInit: d('int cuInit(unsigned int flags)'),
    cuDriverGetVersion: d('int cuDriverGetVersion(_Out_ int *version)'),
    cuDeviceGetCount: d('int cuDeviceGetCount(_Out_ int *count)'),
    cuDeviceGet: d('int cuDeviceGet(_Out_ int *device, int ordinal)'),
    cuDeviceGetName: d('int cuDeviceGetName(void *name, int len, int device)'),
    cuDeviceGetAttribute: d('int cuDeviceGetAttribute(_Out_ int *value, int attribute, int device)'),
    cuDeviceTotalMem: d('int cuDeviceTotalMem(_Out_ size_t *bytes, int device)', ['_v2']),
    cuDevicePrimaryCtxRetain: d('int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int device)'),
    cuDevicePrimaryCtxRelease: d('int cuDevicePrimaryCtxRelease(int device)', ['_v2']),
    cuCtxSetCurrent: d('int cuCtxSetCurrent(void *ctx)'),
    cuCtxSynchronize: d('int cuCtxSynchronize()'),
    cuMemAlloc: d('int cuMemAlloc(_Out_ uint64_t *dptr, size_t bytes)', ['_v2']),
    cuMemFree: d('int cuMemFree(uint64_t dptr)', ['_v2']),
    cuMemGetInfo: d('int cuMemGetInfo(_Out_ size_t *free, _Out_ size_t *total)', ['_v2']),
    cuMemHostAlloc: d('int cuMemHostAlloc(_Out_ void **pp, size_t bytes, unsigned int flags)'),
    cuMemFreeHost: d('int cuMemFreeHost(void *p)'),
    cuMemcpyHtoD: d('int cuMemcpyHtoD(uint64_t dst, const void *src, size_t bytes)', ['_v2']),
    cuMemcpyDtoH: d('int cuMemcpyDtoH(void *dst, uint64_t src, size_t bytes)', ['_v2']),
    cuMemcpyDtoD: d('int cuMemcpyDtoD(uint64_t dst, uint64_t src, size_t bytes)', ['_v2']),
    cuMemcpyHtoDAsync: d('int cuMemcpyHtoDAsync(uint64_t dst, const void *src, size_t bytes, void *stream)', ['_v2']),
    cuMemcpyDtoHAsync: d('int cuMemcpyDtoHAsync(void *dst, uint64_t src, size_t bytes, void *stream)', ['_v2']),
    cuMemcpyDtoDAsync: d('int cuMemcpyDtoDAsync(uint64_t dst, uint64_t src, size_t bytes, void *stream)', ['_v2']),
    cuMemsetD8: d('int cuMemsetD8(uint64_t dst, uint8_t value, size_t count)', ['_v2']),
    cuMemsetD8Async: d('int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t count, void *stream)'),
    cuStreamCreate: d('int cuStreamCreate(_Out_ void **stream, unsigned int flags)'),
    cuStreamDestroy: d('int cuStreamDestroy(void *stream)', ['_v2']),
    cuStreamSynchronize: d('int cuStreamSynchronize(void *stream)'),
    cuStreamWaitEvent: d('int cuStreamWaitEvent(void *stream, void *event, unsigned int flags)'),
    cuEventCreate: d('int cuEventCreate(_Out_ void **event, unsigned int flags)'),
    cuEventRecord: d('int cuEventRecord(void *event, void *stream)'),
    cuEventSynchronize: d('int cuEventSynchronize(void *event)'),
    cuEventElapsedTime: d('int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)', ['_v2']),
    cuEventDestroy: d('int cuEventDestroy(void *event)', ['_v2']),
    cuModuleLoadData: d('int cuModuleLoadData(_Out_ void **module, const void *image)'),
    cuModuleUnload: d('int cuModuleUnload(void *module)'),
    cuModuleGetFunction: d('int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)'),
    cuLaunchKernel: d(
      'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, ' +
        'unsigned int by, unsigned int bz, unsigned int shared, void *stream, void *params, void *extra)',
    ),
    cuFuncSetAttribute: d('int cuFuncSetAttribute(void *fn, int attribute, int value)'),
    cuStreamBeginCapture: d('int cuStreamBeginCapture(void *stream, int mode)', ['_v2']),
    cuStreamEndCapture: d('int cuStreamEndCapture(void *stream, _Out_ void **graph)'),
    cuGraphInstantiateWithFlags: d(
      'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, unsigned long long flags)',
    ),
    cuGraphLaunch: d('int cuGraphLaunch(void *exec, void *stream)'),
    cuGraphExecDestroy: d('int cuGraphExecDestroy(void *exec)'),
    cuGraphDestroy: d('int cuGraphDestroy(void *graph)'),
    cuGetErrorName: d('int cuGetErrorName(int error, _Out_ const char **name)'),
    cuGetErrorString: d('int cuGetErrorString(int error, _Out_ const char **text)'),
  };
}

let driver: CudaDriver | undefined;
let loadError: string | undefined;

/** The driver, loaded and initialized once; a CommvqError when there is none. */
export function cudaDriver(): CudaDriver {
  if (driver) return driver;
  if (loadError) throw noDriver(loadError);
  const errors: string[] = [];
  const lib = loadFirst(['libcuda.so.1', 'libcuda.so'], errors);
  if (!lib) {
    loadError = (errors[0] ?? 'not found').replace(/^libcuda\.so\.1: /, '');
    throw noDriver(loadError);
  }
  const bound = bind(lib);
  const rc = bound.cuInit(0) as number;
  if (rc !== 0) {
    loadError = `cuInit failed with ${errorName(bound, rc)}`;
    throw noDriver(loadError);
  }
  driver = bound;
  return driver;
}

function noDriver(detail: string): CommvqError {
  return new CommvqError(
    `no CUDA driver found (libcuda.so.1): ${detail}`,
    'run on a machine with an NVIDIA GPU and driver, or pick the CPU backend (--device cpu)',
  );
}

let available: boolean | undefined;

/** True when the driver loads and sees at least one GPU. Never throws; the answer is cached. */
export function cudaAvailable(): boolean {
  if (available !== undefined) return available;
  try {
    const count = [0];
    available = cudaDriver().cuDeviceGetCount(count) === 0 && count[0]! > 0;
  } catch {
    available = false;
  }
  return available;
}

/** The number of CUDA devices (0 without a driver). */
export function cudaDeviceCount(): number {
  if (!cudaAvailable()) return 0;
  const count = [0];
  checkCu(cudaDriver().cuDeviceGetCount(count), 'cuDeviceGetCount');
  return count[0]!;
}

function errorName(d: CudaDriver, rc: number): string {
  const name: [string | null] = [null];
  const text: [string | null] = [null];
  if (d.cuGetErrorName(rc, name) !== 0) return `CUresult ${rc}`;
  d.cuGetErrorString(rc, text);
  return text[0] ? `${name[0]} (${text[0]})` : String(name[0]);
}

/** Throws a CommvqError when a driver call did not return CUDA_SUCCESS. */
export function checkCu(rc: number, call: string): void {
  if (rc === 0) return;
  const name = driver ? errorName(driver, rc) : `CUresult ${rc}`;
  const hint =
    rc === CUDA_ERROR_OUT_OF_MEMORY
      ? 'the GPU is out of memory: use a shorter context, a smaller model, or free other processes on it'
      : 'a failing kernel leaves the CUDA context unusable; rerun with CUDA_LAUNCH_BLOCKING=1 to find the first error';
  throw new CommvqError(`CUDA call ${call} failed: ${name}`, hint);
}

export function isOutOfMemory(rc: number): boolean {
  return rc === CUDA_ERROR_OUT_OF_MEMORY;
}
