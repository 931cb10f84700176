// value_squared_error.cu — TrainOps.squaredError and sumSquares: Σ (a − b)² over n elements, optionally with the
// gradient with respect to a, grad = 2·gradScale·(a − b). sumSquares is the same kernel with b = null (Σ a²).
//
//   a, b: [n] f32 or bf16 (entry value_squared_error_{a}_{b}: f32_f32, f32_bf16, bf16_f32, bf16_bf16)
//   grad: [n] f32 or null    partial: [gridDim.x] f64, one sum per block, added up on the host in block order
// Launch: grid-stride, block 256 (8 warps), grid ≤ 4 blocks per SM. Accumulation: f64 per thread and per block, so
// the sum is exact to f64 rounding and deterministic for a given grid.
#include "common.cuh"

template <typename TA, typename TB>
__device__ __forceinline__ void squared_error(double* partial, float* grad, const TA* a, const TB* b, long long n,
                                              float two_scale) {
  double s = 0.0;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float d = to_f32<TA>(a[i]) - (b ? to_f32<TB>(b[i]) : 0.f);
    s += (double)d * (double)d;
    if (grad) grad[i] = two_scale * d;
  }
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  __shared__ double warps[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warps[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) t += warps[w];
    partial[blockIdx.x] = t;
  }
}

#define SQUARED_ERROR(NAME, TA, TB)                                                                           \
  extern "C" __global__ void value_squared_error_##NAME(double* partial, float* grad, const TA* a, const TB* b, \
                                                        long long n, float two_scale) {                       \
    squared_error<TA, TB>(partial, grad, a, b, n, two_scale);                                                 \
  }
SQUARED_ERROR(f32_f32, float, float)
SQUARED_ERROR(f32_bf16, float, __nv_bfloat16)
SQUARED_ERROR(bf16_f32, __nv_bfloat16, float)
SQUARED_ERROR(bf16_bf16, __nv_bfloat16, __nv_bfloat16)
