// Row argmax: out[r] = the smallest c with x[r, c] = max_c x[r, c] (first index on ties, as the CPU backend).
// NaNs are skipped (a row of only NaNs gives 0).
//
//   x:   [R, F] f32 / bf16 (entry argmax_rows_f32 / argmax_rows_bf16), row-major
//   out: [R] i32
//
// Launch: grid (R), block 32·k ≤ 1024; each thread scans a strided slice, then (value, index) pairs are reduced
// by warp shuffles and shared memory. Compared in f32.
#include "common.cuh"

__device__ __forceinline__ void better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

template <typename T>
__device__ __forceinline__ void argmax_row(int* out, const T* x, int F) {
  const T* row = x + (long long)blockIdx.x * F;
  float v = NEG_INF;
  int idx = 0x7fffffff;
  for (int c = threadIdx.x; c < F; c += blockDim.x) {
    const float y = to_f32<T>(row[c]);
    if (y > v || (y == v && c < idx)) {
      v = y;
      idx = c;
    }
  }
  for (int o = 16; o > 0; o >>= 1) better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  __shared__ float vs[32];
  __shared__ int is[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    vs[warp] = v;
    is[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    v = lane < warps ? vs[lane] : NEG_INF;
    idx = lane < warps ? is[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
    if (lane == 0) out[blockIdx.x] = idx == 0x7fffffff ? 0 : idx;
  }
}

extern "C" __global__ void argmax_rows_f32(int* out, const float* x, int F) { argmax_row<float>(out, x, F); }
extern "C" __global__ void argmax_rows_bf16(int* out, const __nv_bfloat16* x, int F) { argmax_row<__nv_bfloat16>(out, x, F); }
