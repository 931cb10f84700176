// Row scatter: dst[rows[i], :] = src[i, :], whole rows moved as bytes (no arithmetic, any dtype).
//
//   dst:  [R, rowBytes] bytes, e.g. a KV cache [capacity, H_kv·D_h] bf16
//   src:  [n, rowBytes] bytes, the new rows
//   rows: [n] i32 in device memory, read at run time (so a replayed CUDA graph appends at the current position);
//         a row outside [0, R) is skipped
//
// Launch: grid (n), block 256; 16-byte moves when the row size and both row addresses allow, else single bytes.
// nvcc-flags: --use_fast_math
#include "common.cuh"

extern "C" __global__ void scatter_rows(unsigned char* __restrict__ dst, const unsigned char* __restrict__ src,
                                        const int* __restrict__ rows, int R, long long rowBytes) {
  const int i = blockIdx.x;
  const int r = rows[i];
  if (r < 0 || r >= R) return;
  unsigned char* d = dst + (long long)r * rowBytes;
  const unsigned char* s = src + (long long)i * rowBytes;
  const bool wide = (rowBytes & 15) == 0 && (((unsigned long long)d | (unsigned long long)s) & 15) == 0;
  if (wide) {
    for (long long at = threadIdx.x * 16LL; at < rowBytes; at += blockDim.x * 16LL)
      *reinterpret_cast<uint4*>(d + at) = *reinterpret_cast<const uint4*>(s + at);
  } else {
    for (long long at = threadIdx.x; at < rowBytes; at += blockDim.x) d[at] = s[at];
  }
}
