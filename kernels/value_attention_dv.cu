// value_attention_dv.cu — gradient of causal GQA attention with respect to V (TrainOps.attentionValueGrad),
// flash style: the probabilities are recomputed tile by tile and the T×T matrix never exists (T = 8192 and beyond).
//
// Math, query row i at absolute position qStart + i, query head h of kv head g = h / (H_q / H_kv):
//   s_ij = q[i, h]·k[j, g] / sqrt(D_h) for the visible keys j ≤ min(qStart + i, kvLength − 1),  P_h = softmax_j(s),
//   dV[j, g] = Σ_{h of group g} Σ_i P_h[i, j] · dOut[i, h].
// Pass 1, value_attention_lse_d{64,128}: per row and head lse2[h, i] = log2 Σ_j 2^{s_ij·log2 e} (the log-sum-exp in the
//   log2 domain, scale folded in), with the prefill kernel's online max and sum (no P·V: half its work).
// Pass 2, value_attention_dv_d{64,128}: a block owns 128 keys of one kv head (resident in shared memory) and streams
//   the 64-row query tiles that can see them, for every query head of the group: Sᵀ = K·Qᵀ (mma),
//   Pᵀ = 2^{Sᵀ·scale·log2 e − lse2} (causal mask on diagonal tiles), dV += Pᵀ·dOut (mma). Each block writes its own
//   128 rows of dV once: no atomics, so the result is deterministic.
//
// Tensors (row-major, Hugging Face head layout: head h's channels at h·D_h .. h·D_h + D_h − 1):
//   q    [Tq, H_q·D_h]           bf16   post-RoPE
//   k    [≥kvLength, H_kv·D_h]   bf16   post-RoPE
//   dout [Tq, H_q·D_h]           bf16   the f32 gradient rounded to bf16 (as flash-attention's backward takes it)
//   lse2 [H_q, ldl]              f32    ldl = Tq rounded up to 64; written by pass 1, rows ≥ Tq hold +1e30 (P = 0)
//   dv   [kvLength, H_kv·D_h]    f32    every row written (zero where no query sees the key)
//
// Launch (128 threads = 4 warps each; src/core/backend/cuda/ops/value-train.ts):
//   pass 1: grid (H_q, ceil(Tq/128)), dynamic shared memory (128 + 2·64)·D_h·2 bytes (Q tile, 2 stages of K), 3 blocks/SM;
//           blockIdx.y reversed so the query blocks with the most keys start first. Warp w owns rows 32w .. 32w+31.
//   pass 2: grid (H_kv, ceil(kvLength/128)), shared (128 + 4·64)·D_h·2 + 512 bytes (K tile, 2 stages of Q, dOut and
//           lse2); blockIdx.y = 0 (the keys every query sees, the longest block) starts first. Warp w owns keys
//           32w .. 32w+31 as two m16 tiles; its Sᵀ tile is 32 keys × 64 query rows.
// Both passes use mma.sync m16n8k16 (bf16 in, f32 accumulate), cp.async double buffering into XOR-swizzled shared
// memory read by ldmatrix, exactly as kernels/attention_prefill.cu (whose Q/K/V roles become K/Q/dOut here); the tile
// loads, S = A·Bᵀ, pass 1's causal mask and online softmax are attention_tile.cuh's, shared with it.
// Accumulation: f32 throughout (scores, softmax statistics, dV); Pᵀ is rounded to bf16 for its mma.
// nvcc-flags: --use_fast_math

#include <cuda_bf16.h>

#include "attention_tile.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockM = 128;  // resident rows per block: query rows (pass 1) or keys (pass 2)
constexpr int kMTiles = 2;    // m16 tiles per warp
constexpr int kBlockN = 64;   // streamed rows per tile: keys (pass 1) or query rows (pass 2)
constexpr int kNTiles = kBlockN / 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNoRow = 1e30f;  // lse2 of a padding row: 2^(s − 1e30) = 0

// ---- pass 1: log-sum-exp of every query row and head ------------------------------------------------------------
template <int D>
__device__ __forceinline__ void lse_pass(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                         float* __restrict__ lse2, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                                         float scale, int ldl) {
  constexpr int kQBytes = kBlockM * D * 2;
  constexpr int kKBytes = kBlockN * D * 2;
  constexpr int kKSteps = D / 16;
  constexpr bool kQInRegs = D <= 64;

  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = smem_addr(smem);
  const u32 sK = sQ + kQBytes;  // 2 stages

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int h = blockIdx.x;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kBlockM;
  const int hkv = h / (Hq / Hkv);
  const size_t ldq = static_cast<size_t>(Hq) * D;
  const size_t ldkv = static_cast<size_t>(Hkv) * D;
  const int kvEnd = min(kvLength, qStart + Tq);
  const int rowsHere = min(kBlockM, Tq - m0);
  const int keyLimit = max(0, min(kvEnd, qStart + m0 + rowsHere));
  const int nTiles = (keyLimit + kBlockN - 1) / kBlockN;
  const __nv_bfloat16* kh = k + static_cast<size_t>(hkv) * D;

  load_tile<D, kBlockM, kThreads>(sQ, q + static_cast<size_t>(m0) * ldq + static_cast<size_t>(h) * D,
                                  ldq, rowsHere, tid);
  load_tile<D, kBlockN, kThreads>(sK, kh, ldkv, keyLimit, tid);
  cp_async_commit();

  const float sl2 = scale * kLog2e;
  const int warpRow = m0 + warp * 32;
  const int warpPosMin = qStart + warpRow;
  const int warpPosMax = warpPosMin + 31;
  const u32 qOff = swz<D>(warp * 32 + (lane & 15), lane >> 4);
  const u32 kOff = swz<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);

  float rowMax[kMTiles][2];
  float rowSum[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      rowMax[mt][hh] = neg_inf();
      rowSum[mt][hh] = 0.f;
    }
  u32 qa[kQInRegs ? kMTiles : 1][kQInRegs ? kKSteps : 1][4];
  u32 a[kMTiles][4];  // the A fragments of one k16 step of Q·Kᵀ

  for (int t = 0; t < nTiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < nTiles) {
      const int n1 = (t + 1) * kBlockN;
      load_tile<D, kBlockN, kThreads>(sK + (stage ^ 1) * kKBytes, kh + static_cast<size_t>(n1) * ldkv,
                                      ldkv, keyLimit - n1, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    if constexpr (kQInRegs) {
      if (t == 0) load_a_fragments<D>(qa, sQ, qOff);
    }

    const int n0 = t * kBlockN;
    if (n0 <= warpPosMax) {
      const u32 sKs = sK + stage * kKBytes;
      float s[kMTiles][kNTiles][4];
      mma_abt<D, kQInRegs>(s, a, qa, sQ, qOff, sKs, kOff);
      causal_mask(s, n0, warpPosMin, kvEnd, lane);
      online_softmax(s, rowMax, rowSum, sl2, [](int, int, float) {});  // nothing else accumulated: no P·V here
    }
    __syncthreads();  // the stage just read is refilled by the next iteration
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float l = rowSum[mt][hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int row = warpRow + mt * 16 + (lane >> 2) + 8 * hh;
      if ((lane & 3) == 0 && row < ldl) {
        const float m = rowMax[mt][hh];
        const float value = row < Tq && l > 0.f && m != neg_inf() ? m * sl2 + log2f(l) : kNoRow;
        lse2[static_cast<size_t>(h) * ldl + row] = value;
      }
    }
}

// ---- pass 2: dV for 128 keys of one kv head -----------------------------------------------------------------------
template <int D>
__device__ __forceinline__ void dv_pass(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                        const __nv_bfloat16* __restrict__ dout, const float* __restrict__ lse2,
                                        float* __restrict__ dv, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                                        float scale, int ldl) {
  constexpr int kKeyBytes = kBlockM * D * 2;
  constexpr int kTileBytes = kBlockN * D * 2;
  constexpr int kLseBytes = kBlockN * 4;
  constexpr int kDTiles = D / 8;
  constexpr int kKSteps = D / 16;
  constexpr bool kKInRegs = D <= 64;

  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sK = smem_addr(smem);
  const u32 sQ = sK + kKeyBytes;         // 2 stages
  const u32 sO = sQ + 2 * kTileBytes;    // 2 stages
  const u32 sL = sO + 2 * kTileBytes;    // 2 stages of 64 floats
  const float* sLse = reinterpret_cast<const float*>(smem + kKeyBytes + 4 * kTileBytes);

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = blockIdx.x;
  const int n0 = blockIdx.y * kBlockM;
  const int G = Hq / Hkv;
  const size_t ldq = static_cast<size_t>(Hq) * D;
  const size_t ldkv = static_cast<size_t>(Hkv) * D;
  const int keysHere = min(kBlockM, kvLength - n0);
  // query rows that can see key n0 start at i = n0 − qStart; tiles before it see none of this block's keys
  const int iFirst = max(0, n0 - qStart);
  const int qt0 = iFirst / kBlockN;
  const int nQ = iFirst < Tq ? (Tq + kBlockN - 1) / kBlockN - qt0 : 0;
  const int nIter = G * nQ;

  auto load_queries = [&](int it, int stage) {
    const int hq = g * G + it / nQ;
    const int r0 = (qt0 + it % nQ) * kBlockN;
    const size_t at = static_cast<size_t>(r0) * ldq + static_cast<size_t>(hq) * D;
    load_tile<D, kBlockN, kThreads>(sQ + stage * kTileBytes, q + at, ldq, Tq - r0, tid);
    load_tile<D, kBlockN, kThreads>(sO + stage * kTileBytes, dout + at, ldq, Tq - r0, tid);
    if (tid < kLseBytes / 16) cp_async_16(sL + stage * kLseBytes + tid * 16, lse2 + static_cast<size_t>(hq) * ldl + r0 + tid * 4, true);
  };

  load_tile<D, kBlockM, kThreads>(sK, k + static_cast<size_t>(n0) * ldkv + static_cast<size_t>(g) * D,
                                  ldkv, keysHere, tid);
  if (nIter > 0) load_queries(0, 0);
  cp_async_commit();

  const float sl2 = scale * kLog2e;
  const int warpKey = n0 + warp * 32;  // first key of this warp
  const u32 aOff = swz<D>(warp * 32 + (lane & 15), lane >> 4);                  // A of K·Qᵀ: keys
  const u32 bOff = swz<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);     // B of K·Qᵀ: two n8 tiles of rows
  const u32 oOff = swz<D>((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);     // B of Pᵀ·dOut (transposed)

  float acc[kMTiles][kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][dt][e] = 0.f;
  u32 ka[kKInRegs ? kMTiles : 1][kKInRegs ? kKSteps : 1][4];
  u32 a[kMTiles][4];  // the A fragments of one k16 step of K·Qᵀ

  for (int it = 0; it < nIter; ++it) {
    const int stage = it & 1;
    if (it + 1 < nIter) {
      load_queries(it + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    if constexpr (kKInRegs) {
      if (it == 0) load_a_fragments<D>(ka, sK, aOff);
    }

    const int r0 = (qt0 + it % nQ) * kBlockN;  // first query row of the tile
    const int posMin = qStart + r0;            // its absolute position
    if (warpKey <= posMin + kBlockN - 1) {     // otherwise every key of this warp is after every row of the tile
      const u32 sQs = sQ + stage * kTileBytes;
      const u32 sOs = sO + stage * kTileBytes;
      const float* lse = sLse + stage * kBlockN;

      // ---- Sᵀ = K·Qᵀ (raw dot products): rows = keys, columns = query rows ----
      float s[kMTiles][kNTiles][4];
      mma_abt<D, kKInRegs>(s, a, ka, sK, aOff, sQs, bOff);

      // ---- Pᵀ = 2^(s·scale·log2 e − lse2[row]); masked where the key is after the row or the row is padding ----
      const bool mask = warpKey + 31 > posMin || r0 + kBlockN > Tq;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const int col = nt * 8 + 2 * (lane & 3);
        const float2 l2 = *reinterpret_cast<const float2*>(lse + col);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = col + (e & 1);
            float p = fast_exp2(fmaf(s[mt][nt][e], sl2, -((e & 1) ? l2.y : l2.x)));
            if (mask) {
              const int key = warpKey + mt * 16 + (lane >> 2) + 8 * (e >> 1);
              if (key > posMin + c || r0 + c >= Tq) p = 0.f;
            }
            s[mt][nt][e] = p;
          }
      }

      // ---- dV += Pᵀ·dOut: the Sᵀ accumulator layout of two n8 tiles is the A fragment of one k16 step ----
#pragma unroll
      for (int ks = 0; ks < kBlockN / 16; ++ks) {
        u32 pa[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          pa[mt][0] = pack_bf16(s[mt][2 * ks][0], s[mt][2 * ks][1]);
          pa[mt][1] = pack_bf16(s[mt][2 * ks][2], s[mt][2 * ks][3]);
          pa[mt][2] = pack_bf16(s[mt][2 * ks + 1][0], s[mt][2 * ks + 1][1]);
          pa[mt][3] = pack_bf16(s[mt][2 * ks + 1][2], s[mt][2 * ks + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < kDTiles / 2; ++dp) {
          u32 b0, b1, b2, b3;
          ldmatrix_x4_trans(sOs + (oOff ^ (dp * 32)) + ks * 16 * D * 2, b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            mma_bf16(acc[mt][2 * dp], pa[mt], b0, b1);
            mma_bf16(acc[mt][2 * dp + 1], pa[mt], b2, b3);
          }
        }
      }
    }
    __syncthreads();  // the stage just read is refilled by the next iteration
  }
  cp_async_wait<0>();

  // ---- dV rows of this block, f32 ----
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int key = warpKey + mt * 16 + (lane >> 2) + 8 * hh;
      if (key < kvLength) {
        float* o = dv + static_cast<size_t>(key) * ldkv + static_cast<size_t>(g) * D + 2 * (lane & 3);
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt)
          *reinterpret_cast<float2*>(o + dt * 8) = make_float2(acc[mt][dt][2 * hh], acc[mt][dt][2 * hh + 1]);
      }
    }
}

}  // namespace

// Arguments: see the header. scale = 1/sqrt(D_h); ldl = Tq rounded up to 64.
extern "C" __global__ void __launch_bounds__(kThreads, 3)
    value_attention_lse_d64(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, float* lse2,
                            int Tq, int Hq, int Hkv, int qStart, int kvLength, float scale, int ldl) {
  lse_pass<64>(q, k, lse2, Tq, Hq, Hkv, qStart, kvLength, scale, ldl);
}

extern "C" __global__ void __launch_bounds__(kThreads, 3)
    value_attention_lse_d128(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, float* lse2,
                             int Tq, int Hq, int Hkv, int qStart, int kvLength, float scale, int ldl) {
  lse_pass<128>(q, k, lse2, Tq, Hq, Hkv, qStart, kvLength, scale, ldl);
}

extern "C" __global__ void __launch_bounds__(kThreads, 2)
    value_attention_dv_d64(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                           const __nv_bfloat16* __restrict__ dout, const float* __restrict__ lse2, float* dv, int Tq,
                           int Hq, int Hkv, int qStart, int kvLength, float scale, int ldl) {
  dv_pass<64>(q, k, dout, lse2, dv, Tq, Hq, Hkv, qStart, kvLength, scale, ldl);
}

extern "C" __global__ void __launch_bounds__(kThreads, 2)
    value_attention_dv_d128(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                            const __nv_bfloat16* __restrict__ dout, const float* __restrict__ lse2, float* dv, int Tq,
                            int Hq, int Hkv, int qStart, int kvLength, float scale, int ldl) {
  dv_pass<128>(q, k, dout, lse2, dv, Tq, Hq, Hkv, qStart, kvLength, scale, ldl);
}
