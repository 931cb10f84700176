// commvq_bits_gemm.cuh — the tile core shared by commvq_pack.cu (‖b_t·E‖ of new tokens) and commvq_dequant.cu
// (v̂ of stored tokens): W = B·E for packed value bits B and the bf16 value codebook E, on tensor cores.
//
// Math: W[t, c] = Σ_{i < N_c, bit i of token t set} E[i, c]. The bits become bf16 0/1 and E is bf16, so every product
//   is exact and the m16n8k16 bf16 MMA adds them in f32: W differs from a sequential f32 sum (the CPU's) only in the
//   order of the f32 additions, a few ulp of Σ|E[i, c]|.
//
// Tensors:
//   bits  [n, N_c/32] u32 words of the packed rows (code-packing.ts packBits: bit i of a row = bit i mod 32 of word
//         i / 32, little-endian bytes)
//   E     [N_c, D] bf16, rows 16-byte aligned (D a multiple of 64)
//
// Tile: a block of 256 threads (8 warps) computes W for 64 tokens × 128 channels (tokens blockIdx.x·64 + [0, 64),
//   channels blockIdx.y·128 + [0, 128)), walking N_c in steps of 64 bits. Per step, E's 64 × 128 tile enters shared
//   memory as pairs along N_c (word (p, c) = E[2p, c] low half, E[2p + 1, c] high half: one B-fragment register) and
//   the 64 tokens' two bit words beside it; E (≤ 4 MiB) stays in L2 across token tiles.
//   Warp w owns tokens 16·(w mod 4) + [0, 16) and channels 64·(w / 4) + [0, 64): eight n-tiles of 8 channels.
//   acc[nt][j] of lane (g, q) = (lane / 4, lane mod 4): token g + 8·(j / 2), channel 8·nt + 2q + (j mod 2), relative
//   to the warp's tokens and channels (the C fragment of mma.m16n8k16).
#pragma once
#include "common.cuh"
#include "tensor_core.cuh"

namespace bits_gemm {

constexpr int TT = 64;        // tokens per tile
constexpr int TC = 128;       // channels per tile
constexpr int KB = 64;        // codebook rows per step (two u32 words of bits per token)
constexpr int THREADS = 256;
constexpr int PLD = TC + 8;   // words per pair row: ≡ 8 (mod 32), so a warp's B reads (4 rows × 8 columns) hit 32 banks

struct Shared {
  unsigned e[KB / 2][PLD];  // E tile as bf16 pairs along N_c
  unsigned b[KB / 32][TT];  // bit words of the tile's tokens
};

// Two bits (bit 0 → low half) as a register of two bf16 0/1 values.
__device__ __forceinline__ unsigned bit_pair(unsigned x) { return ((x & 1u) ? 0x3f80u : 0u) | ((x & 2u) ? 0x3f800000u : 0u); }

// Warp's first token and channel in the tile.
__device__ __forceinline__ int warp_token() { return 16 * ((threadIdx.x >> 5) & 3); }
__device__ __forceinline__ int warp_channel() { return 64 * (threadIdx.x >> 7); }

__device__ __forceinline__ void tile(Shared& s, const unsigned* __restrict__ bits, const __nv_bfloat16* __restrict__ E,
                                     int n, int Nc, int D, float (&acc)[8][4]) {
  const int tid = threadIdx.x, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int t0 = blockIdx.x * TT, c0 = blockIdx.y * TC;
  const int wt = warp_token(), wc = warp_channel();
  const int words = Nc >> 5;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  for (int k0 = 0; k0 < Nc; k0 += KB) {
    __syncthreads();  // the previous step's reads are done
    // E tile: 32 pair rows × 16 chunks of 8 channels = 512 units, two per thread
#pragma unroll
    for (int u = 0; u < (KB / 2) * (TC / 8) / THREADS; ++u) {
      const int e = tid + u * THREADS, p = e >> 4, col = (e & 15) * 8;
      unsigned w[8];
      if (c0 + col < D) {
        const bf16x8 lo = load8(E + (long long)(k0 + 2 * p) * D + c0 + col);
        const bf16x8 hi = load8(E + (long long)(k0 + 2 * p + 1) * D + c0 + col);
#pragma unroll
        for (int j = 0; j < 8; ++j) w[j] = (unsigned)__bfloat16_as_ushort(lo.v[j]) | ((unsigned)__bfloat16_as_ushort(hi.v[j]) << 16);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) w[j] = 0u;
      }
      *reinterpret_cast<uint4*>(&s.e[p][col]) = make_uint4(w[0], w[1], w[2], w[3]);
      *reinterpret_cast<uint4*>(&s.e[p][col + 4]) = make_uint4(w[4], w[5], w[6], w[7]);
    }
    if (tid < TT * (KB / 32)) {
      const int t = tid % TT, w = tid / TT;
      s.b[w][t] = t0 + t < n ? bits[(long long)(t0 + t) * words + (k0 >> 5) + w] : 0u;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < KB; kk += 16) {
      const unsigned ba = s.b[kk >> 5][wt + g], bb = s.b[kk >> 5][wt + g + 8];
      const int sh = (kk & 31) + 2 * q;
      const unsigned a0 = bit_pair(ba >> sh), a1 = bit_pair(bb >> sh), a2 = bit_pair(ba >> (sh + 8)), a3 = bit_pair(bb >> (sh + 8));
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int col = wc + 8 * nt + g;
        mma_bf16(acc[nt], a0, a1, a2, a3, s.e[(kk >> 1) + q][col], s.e[(kk >> 1) + 4 + q][col]);
      }
    }
  }
}

}  // namespace bits_gemm
