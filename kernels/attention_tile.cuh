// The flash-attention tile step the causal attention kernels share (attention_prefill.cu, and the two passes of
// value_attention_dv.cu): tile loads into swizzled shared memory, S = A·Bᵀ for one warp's 32 rows × a tile of 8·NT
// columns on tensor cores, the causal mask, and the online softmax over a tile of scores.
//
// Fragment layout (mma.sync m16n8k16, bf16 in, f32 accumulate): s[mt][nt][e] of lane l is row
// 16·mt + (l >> 2) + 8·(e >> 1) and column 8·nt + 2·(l & 3) + (e & 1) of the warp's S tile, so the 4 lanes l with the
// same l >> 2 hold a row between them and hh = e >> 1 picks one of a thread's two rows per m16 tile.
// Shared-memory tiles have rows of D bf16 in the XOR swizzle of swz<D>; the ldmatrix source offsets (aOff, bOff) are
// those of k16 step 0, and step kk reads offset ^ (32·kk), since (2kk + b) ^ s = 2kk ^ (b ^ s) for b ∈ {0, 1} and
// 32·kk < one row, so the XOR never reaches the row bits.
// Header only, without the C++ standard library, so that NVRTC compiles it as nvcc does.
#pragma once

#include <cuda_bf16.h>

#include "tensor_core.cuh"

namespace {

// ROWS × D tile from global memory (row stride ld elements) into swizzled shared memory; rows ≥ valid read as zero.
// Thread tid of THREADS copies chunk tid % (D/8) of rows tid / (D/8) + i·kRowStep: one pointer, bumped by a constant.
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(u32 dst, const __nv_bfloat16* src, size_t ld, int valid, int tid) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kRowStep = THREADS / kChunksPerRow;  // a multiple of 8, so the swizzle is the same on every step
  const int r0 = tid / kChunksPerRow;
  const int c = tid % kChunksPerRow;
  const u32 d0 = dst + swz<D>(r0, c);
  const __nv_bfloat16* p = src + static_cast<size_t>(r0) * ld + c * 8;
  const size_t step = static_cast<size_t>(kRowStep) * ld;
#pragma unroll
  for (int i = 0; i < ROWS / kRowStep; ++i) {
    const bool ok = r0 + i * kRowStep < valid;
    cp_async_16(d0 + i * kRowStep * D * 2, ok ? p : src, ok);
    p += step;
  }
}

// The A fragments of every m16 tile and k16 step of this warp's rows (tile at sA, this lane's offset aOff), for
// kernels that keep A in registers across the key tiles.
template <int D, int MT, int KS>
__device__ __forceinline__ void load_a_fragments(u32 (&a)[MT][KS][4], u32 sA, u32 aOff) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
      ldmatrix_x4(sA + (aOff ^ (kk * 32)) + mt * 16 * D * 2, a[mt][kk][0], a[mt][kk][1], a[mt][kk][2], a[mt][kk][3]);
}

// s = A·Bᵀ (raw dot products) for this warp's MT m16 tiles of A rows × NT n8 tiles of B rows, over D columns: A from
// aRegs (load_a_fragments) when A_IN_REGS, else from the tile at sA (this lane's offset aOff), one k16 step at a time
// into a; B from the tile at sB (offset bOff). a is the caller's, declared after its running accumulators: an array
// declared in here would be placed ahead of them once inlined, which renumbers the PTX registers (the same code else).
template <int D, bool A_IN_REGS, int MT, int NT, int RM, int RK>
__device__ __forceinline__ void mma_abt(float (&s)[MT][NT][4], u32 (&a)[MT][4], const u32 (&aRegs)[RM][RK][4], u32 sA,
                                        u32 aOff, u32 sB, u32 bOff) {
  constexpr int kKSteps = D / 16;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      if constexpr (A_IN_REGS) {
#pragma unroll
        for (int e = 0; e < 4; ++e) a[mt][e] = aRegs[mt][kk][e];
      } else {
        ldmatrix_x4(sA + (aOff ^ (kk * 32)) + mt * 16 * D * 2, a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
      }
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      u32 b0, b1, b2, b3;
      ldmatrix_x4(sB + (bOff ^ (kk * 32)) + np * 16 * D * 2, b0, b1, b2, b3);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_bf16(s[mt][2 * np], a[mt], b0, b1);
        mma_bf16(s[mt][2 * np + 1], a[mt], b2, b3);
      }
    }
  }
}

// Causal mask of a query-rows × keys tile: score s of the row at absolute position pos (warpPosMin + its row) and key
// n0 + its column becomes −∞ where key > min(pos, kvEnd − 1). Only tiles that reach past the warp's first position
// are touched.
template <int MT, int NT>
__device__ __forceinline__ void causal_mask(float (&s)[MT][NT][4], int n0, int warpPosMin, int kvEnd, int lane) {
  if (n0 + NT * 8 - 1 > min(warpPosMin, kvEnd - 1)) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = n0 + nt * 8 + 2 * (lane & 3) + (e & 1);
          const int limit = min(warpPosMin + mt * 16 + (lane >> 2) + 8 * (e >> 1), kvEnd - 1);
          if (key > limit) s[mt][nt][e] = neg_inf();
        }
  }
}

// Online softmax (log2 domain, sl2 = scale·log2 e) of a tile of scores s, for each of this thread's rows (m16 tile
// mt, half hh): the row's max over the tile (shared by its 4 lanes) raises the running max m; s becomes the
// unnormalised probabilities 2^(s·sl2 − m·sl2) and their sum is added to the running sum l, scaled first by
// alpha = 2^((m_old − m)·sl2); rescale(mt, hh, alpha) scales whatever else was accumulated over earlier tiles.
// A row with no visible key yet (m = −∞) keeps l = 0.
template <int MT, int NT, class Rescale>
__device__ __forceinline__ void online_softmax(float (&s)[MT][NT][4], float (&rowMax)[MT][2], float (&rowSum)[MT][2],
                                               float sl2, Rescale rescale) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float mx = neg_inf();
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hh], s[mt][nt][2 * hh + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mNew = fmaxf(rowMax[mt][hh], mx);
      const float mScaled = mNew == neg_inf() ? 0.f : mNew * sl2;
      const float alpha = fast_exp2(rowMax[mt][hh] * sl2 - mScaled);
      rowMax[mt][hh] = mNew;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float p = fast_exp2(fmaf(s[mt][nt][2 * hh + c], sl2, -mScaled));
          s[mt][nt][2 * hh + c] = p;
          sum += p;
        }
      rowSum[mt][hh] = rowSum[mt][hh] * alpha + sum;
      rescale(mt, hh, alpha);
    }
}

}  // namespace
