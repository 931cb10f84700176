// value_add_bias.cu — TrainOps.addBias: out [R, C] = x [R, C] + bias [C] (broadcast over rows).
//
//   x:    [R, C] f32 / bf16 (entry value_add_bias_f32 / value_add_bias_bf16), row-major
//   bias: [C] f32            out: [R, C] f32 (may be x itself for f32 x: in place)
// Launch: grid (R, ceil(C/1024)), block 256; each thread adds 4 columns 256 apart. f32 arithmetic.
#include "common.cuh"

constexpr int kThreads = 256;
constexpr int kPerThread = 4;  // columns per thread, kThreads apart

template <typename T>
__device__ __forceinline__ void add_bias_row(float* out, const T* x, const float* bias, int C) {
  const size_t base = (size_t)blockIdx.x * C;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = blockIdx.y * (kThreads * kPerThread) + i * kThreads + threadIdx.x;
    if (c < C) out[base + c] = to_f32<T>(x[base + c]) + bias[c];
  }
}

extern "C" __global__ void value_add_bias_f32(float* out, const float* x, const float* bias, int C) {
  add_bias_row<float>(out, x, bias, C);
}
extern "C" __global__ void value_add_bias_bf16(float* out, const __nv_bfloat16* x, const float* bias, int C) {
  add_bias_row<__nv_bfloat16>(out, x, bias, C);
}
