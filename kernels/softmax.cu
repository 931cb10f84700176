// Row softmax for sampling: out[r, c] = e^{(x[r, c] − m)·k} / Σ_c' e^{(x[r, c'] − m)·k}, m = max_c x[r, c],
// k = 1/temperature. Three passes over the row (max, sum, write), all in f32.
//
//   x:   [R, F] f32 / bf16 (entry softmax_rows_f32 / softmax_rows_bf16), row-major
//   out: [R, F] f32
//
// Launch: grid (R), block 32·k ≤ 1024; block reductions for the max and the sum. f32 accumulation.
// nvcc-flags: --use_fast_math
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void softmax_row(float* out, const T* x, int F, float inv_temperature) {
  const T* row = x + (long long)blockIdx.x * F;
  float* o = out + (long long)blockIdx.x * F;
  float m = NEG_INF;
  for (int c = threadIdx.x; c < F; c += blockDim.x) m = fmaxf(m, to_f32<T>(row[c]));
  m = block_max(m);
  float s = 0.f;
  for (int c = threadIdx.x; c < F; c += blockDim.x) s += __expf((to_f32<T>(row[c]) - m) * inv_temperature);
  const float inv = 1.f / block_sum(s);
  for (int c = threadIdx.x; c < F; c += blockDim.x) o[c] = __expf((to_f32<T>(row[c]) - m) * inv_temperature) * inv;
}

extern "C" __global__ void softmax_rows_f32(float* out, const float* x, int F, float inv_temperature) {
  softmax_row<float>(out, x, F, inv_temperature);
}
extern "C" __global__ void softmax_rows_bf16(float* out, const __nv_bfloat16* x, int F, float inv_temperature) {
  softmax_row<__nv_bfloat16>(out, x, F, inv_temperature);
}
