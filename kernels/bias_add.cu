// Bias add after a GEMM (Qwen2's q/k/v projections): out[r, c] = bf16(f32(x[r, c]) + f32(bias[c])).
//
//   x, out: [R, C] bf16, row-major (out may alias x)
//   bias:   [C] bf16
//
// Launch: grid (R, ceil(C / 256)), block 256; one element per thread (rows on x: T may exceed 65535). f32 math.
#include "common.cuh"

extern "C" __global__ void bias_add_bf16(__nv_bfloat16* out, const __nv_bfloat16* x,
                                         const __nv_bfloat16* __restrict__ bias, int C) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const long long i = (long long)blockIdx.x * C + c;
  out[i] = f2bf(bf2f(x[i]) + bf2f(bias[c]));
}
