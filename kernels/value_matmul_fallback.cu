// value_matmul_fallback.cu — TrainOps.matmul where cuBLASLt is missing or has no algorithm for a shape.
//
// Math: c [M, N] = op(a)·op(b), or c += op(a)·op(b) with accumulate ≠ 0; op(a) = a [M, K] or, with transA, aᵀ of
//   a [K, M]; op(b) = b [K, N] or, with transB, bᵀ of b [N, K]. Row-major; a and b f32 or bf16 (both the same), c f32.
// Launch: grid (ceil(N/16), ceil(M/16)), block (16, 16); 16×16 tiles of op(a) and op(b) through shared memory.
// Accumulation: f32 (exact f32 products of the stored values: no TF32 rounding).
#include "common.cuh"

constexpr int kTile = 16;  // the block is kTile × kTile threads, one output each

template <typename T>
__device__ __forceinline__ void matmul_tile(float* c, const T* a, const T* b, int M, int N, int K, int transA,
                                            int transB, int accumulate) {
  __shared__ float sa[kTile][kTile + 1];
  __shared__ float sb[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kTile + ty;
  const int col = blockIdx.x * kTile + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    const int ka = k0 + tx;  // sa[ty][tx] = op(a)[row, ka]
    sa[ty][tx] = row < M && ka < K ? to_f32<T>(transA ? a[(size_t)ka * M + row] : a[(size_t)row * K + ka]) : 0.f;
    const int kb = k0 + ty;  // sb[ty][tx] = op(b)[kb, col]
    sb[ty][tx] = kb < K && col < N ? to_f32<T>(transB ? b[(size_t)col * K + kb] : b[(size_t)kb * N + col]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) acc = fmaf(sa[ty][kk], sb[kk][tx], acc);
    __syncthreads();
  }
  if (row < M && col < N) {
    const size_t i = (size_t)row * N + col;
    c[i] = accumulate ? c[i] + acc : acc;
  }
}

extern "C" __global__ void value_matmul_fallback_f32(float* c, const float* a, const float* b, int M, int N, int K,
                                                     int transA, int transB, int accumulate) {
  matmul_tile<float>(c, a, b, M, N, K, transA, transB, accumulate);
}

extern "C" __global__ void value_matmul_fallback_bf16(float* c, const __nv_bfloat16* a, const __nv_bfloat16* b, int M,
                                                      int N, int K, int transA, int transB, int accumulate) {
  matmul_tile<__nv_bfloat16>(c, a, b, M, N, K, transA, transB, accumulate);
}
