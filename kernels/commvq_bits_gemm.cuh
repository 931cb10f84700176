// commvq_bits_gemm.cuh — the tile core shared by commvq_pack.cu (‖b_t·E‖ of new tokens) and commvq_dequant.cu
// (v̂ of stored tokens): W = B·E for packed value bits B and the bf16 value codebook E, on CUDA cores.
//
// Math: W[t, c] = Σ_{i < N_c, bit i of token t set} E[i, c], summed in f32 in increasing i, one rounding per added
//   row (fmaf(0 or 1, e, acc): a clear bit adds +0 exactly). So W equals a sequential f32 sum on the CPU.
//
// Tensors:
//   bits  [n, N_c/32] u32 words of the packed rows (code-packing.ts packBits: bit i of a row = bit i mod 32 of word
//         i / 32, little-endian bytes)
//   E     [N_c, D] bf16, rows 16-byte aligned (D a multiple of 64)
//
// Tile: a block of 256 threads computes W for 64 tokens × 128 channels (tokens blockIdx.x·64 + [0, 64), channels
//   blockIdx.y·128 + [0, 128)), walking N_c in steps of 64 bits: E's 64 × 128 tile is read once into shared memory
//   as f32 (32 KiB) and reused by all 64 tokens; E (≤ 4 MiB) stays in L2 across token tiles.
//   Thread (ty, tx) = (tid / 16, tid mod 16) owns tokens ty + 16·i (i < 4) and channels tx·4 + [0, 4) and
//   64 + tx·4 + [0, 4): 32 accumulators; its two float4 reads of a shared E row are conflict-free across a warp.
#pragma once
#include "common.cuh"

namespace bits_gemm {

constexpr int TT = 64;        // tokens per tile
constexpr int TC = 128;       // channels per tile
constexpr int KB = 64;        // codebook rows per step (two u32 words of bits per token)
constexpr int THREADS = 256;

struct Shared {
  float e[KB][TC];
  unsigned b[KB / 32][TT];
};

// acc[i][q]: token ty + 16·i, channel q < 4 → tx·4 + q, q ≥ 4 → 64 + tx·4 + (q − 4) (relative to the tile).
__device__ __forceinline__ void tile(Shared& s, const unsigned* __restrict__ bits, const __nv_bfloat16* __restrict__ E,
                                     int n, int Nc, int D, float (&acc)[4][8]) {
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int t0 = blockIdx.x * TT, c0 = blockIdx.y * TC;
  const int words = Nc >> 5;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[i][q] = 0.f;
  for (int k0 = 0; k0 < Nc; k0 += KB) {
    __syncthreads();  // the previous step's reads are done
    // E tile: 64 rows × 128 bf16 = 1024 chunks of 8, four per thread
#pragma unroll
    for (int u = 0; u < (KB * TC / 8) / THREADS; ++u) {
      const int e = tid + u * THREADS, k = e >> 4, col = (e & 15) * 8;
      float f[8];
      if (c0 + col < D) {
        const bf16x8 x = load8(E + (long long)(k0 + k) * D + c0 + col);
#pragma unroll
        for (int j = 0; j < 8; ++j) f[j] = bf2f(x.v[j]);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) f[j] = 0.f;
      }
      *reinterpret_cast<float4*>(&s.e[k][col]) = make_float4(f[0], f[1], f[2], f[3]);
      *reinterpret_cast<float4*>(&s.e[k][col + 4]) = make_float4(f[4], f[5], f[6], f[7]);
    }
    if (tid < TT * (KB / 32)) {
      const int t = tid % TT, w = tid / TT;
      s.b[w][t] = t0 + t < n ? bits[(long long)(t0 + t) * words + (k0 >> 5) + w] : 0u;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < KB / 32; ++w) {
      unsigned b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) b[i] = s.b[w][ty + 16 * i];
#pragma unroll 8
      for (int kk = 0; kk < 32; ++kk) {
        const float4 lo = *reinterpret_cast<const float4*>(&s.e[w * 32 + kk][tx * 4]);
        const float4 hi = *reinterpret_cast<const float4*>(&s.e[w * 32 + kk][64 + tx * 4]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float f = ((b[i] >> kk) & 1u) ? 1.f : 0.f;
          acc[i][0] = fmaf(f, lo.x, acc[i][0]);
          acc[i][1] = fmaf(f, lo.y, acc[i][1]);
          acc[i][2] = fmaf(f, lo.z, acc[i][2]);
          acc[i][3] = fmaf(f, lo.w, acc[i][3]);
          acc[i][4] = fmaf(f, hi.x, acc[i][4]);
          acc[i][5] = fmaf(f, hi.y, acc[i][5]);
          acc[i][6] = fmaf(f, hi.z, acc[i][6]);
          acc[i][7] = fmaf(f, hi.w, acc[i][7]);
        }
      }
    }
  }
}

// Channel (relative to the tile) of accumulator q of thread tx.
__device__ __forceinline__ int channel(int tx, int q) { return q < 4 ? tx * 4 + q : 64 + tx * 4 + (q - 4); }

}  // namespace bits_gemm
