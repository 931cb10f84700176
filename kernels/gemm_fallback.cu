// Fallback GEMM for `linear` where cuBLASLt is missing or has no algorithm for a shape:
//   y[t, o] = bf16( Σ_k f32(x[t, k]) · f32(w[o, k]) )     (f32 accumulation)
//
//   x: [T, in] bf16, row-major
//   w: [out, in] bf16, row-major (HF Linear weight layout)
//   y: [T, out] bf16, row-major
//
// Launch: grid (ceil(out / 16), ceil(T / 16)), block (16, 16); 16×16 tiles of x and w staged in shared memory,
// one output per thread. Correct for any shape; not fast (cuBLASLt is the fast path).
#include "common.cuh"

#define TILE 16

extern "C" __global__ void gemm_bf16_fallback(__nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ x,
                                              const __nv_bfloat16* __restrict__ w, int T, int in, int out) {
  __shared__ float xs[TILE][TILE + 1];
  __shared__ float ws[TILE][TILE + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t = blockIdx.y * TILE + ty, o = blockIdx.x * TILE + tx;
  const int wo = blockIdx.x * TILE + ty;  // the w row this thread stages
  float acc = 0.f;
  for (int k0 = 0; k0 < in; k0 += TILE) {
    const int k = k0 + tx;
    xs[ty][tx] = (t < T && k < in) ? bf2f(x[(long long)t * in + k]) : 0.f;
    ws[ty][tx] = (wo < out && k < in) ? bf2f(w[(long long)wo * in + k]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < TILE; j++) acc += xs[ty][j] * ws[tx][j];
    __syncthreads();
  }
  if (t < T && o < out) y[(long long)t * out + o] = f2bf(acc);
}
