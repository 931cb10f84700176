// RMSNorm, Hugging Face order (LlamaRMSNorm / Qwen2RMSNorm):
//   r = rsqrt(mean_c(x[t, c]²) + eps)            in f32
//   out[t, c] = bf16( f32(bf16(x[t, c]·r)) · f32(weight[c]) )
// i.e. normalize in f32, cast to bf16 (the input dtype), then multiply by the weight, as transformers does.
//
//   x:      [T, F] bf16, row-major
//   weight: [F] bf16
//   out:    [T, F] bf16 (may alias x)
//
// Launch: grid (T), block 32·k ≤ 1024 threads; one block per row, f32 sum of squares reduced across the block.
// nvcc-flags: --use_fast_math
#include "common.cuh"

extern "C" __global__ void rms_norm_bf16(__nv_bfloat16* out, const __nv_bfloat16* x,
                                         const __nv_bfloat16* __restrict__ weight, int F, float eps) {
  const long long row = (long long)blockIdx.x * F;
  const __nv_bfloat16* xr = x + row;
  __nv_bfloat16* yr = out + row;
  const bool vec = (F & 7) == 0;

  float ss = 0.f;
  if (vec) {
    for (int i = threadIdx.x * 8; i < F; i += blockDim.x * 8) {
      bf16x8 v = load8(xr + i);
#pragma unroll
      for (int j = 0; j < 8; j++) ss += bf2f(v.v[j]) * bf2f(v.v[j]);
    }
  } else {
    for (int i = threadIdx.x; i < F; i += blockDim.x) ss += bf2f(xr[i]) * bf2f(xr[i]);
  }
  const float r = rsqrtf(block_sum(ss) / (float)F + eps);

  if (vec) {
    for (int i = threadIdx.x * 8; i < F; i += blockDim.x * 8) {
      bf16x8 v = load8(xr + i), w = load8(weight + i), o;
#pragma unroll
      for (int j = 0; j < 8; j++) o.v[j] = f2bf(round_bf16(bf2f(v.v[j]) * r) * bf2f(w.v[j]));
      store8(yr + i, o);
    }
  } else {
    for (int i = threadIdx.x; i < F; i += blockDim.x) yr[i] = f2bf(round_bf16(bf2f(xr[i]) * r) * bf2f(weight[i]));
  }
}
