// attention_prefill.cu — causal grouped-query attention for a block of query rows (prefill, chunked prefill).
//
// Math, per query row i (absolute position p = qStart + i) and query head h (kv head g = h / (H_q / H_kv)):
//   s_j   = (q[i, h] · k[j, g]) / sqrt(D_h)              for keys j = 0 .. min(p, kvEnd - 1)
//   out[i, h] = Σ_j softmax(s)_j · v[j, g]
// computed flash-attention style: keys stream through shared memory in tiles of 64, the softmax is kept online
// (running row max m and row sum l in f32, the output accumulator rescaled by exp(m_old − m_new) when m grows),
// so the T×T score matrix never exists and 32K+ token prompts need no extra memory.
//
// Tensors (row-major, Hugging Face head layout: head h's channels at h·D_h .. h·D_h + D_h − 1):
//   q   [Tq, H_q·D_h]          bf16   query rows, already RoPE-rotated
//   k   [≥kvEnd, H_kv·D_h]     bf16   keys, already RoPE-rotated; only rows < kvEnd are read
//   v   [≥kvEnd, H_kv·D_h]     bf16
//   out [Tq, H_q·D_h]          bf16
// where kvEnd = min(kvLength, qStart + Tq) (keys past the last query's position are never visible).
//
// Launch: grid (H_q, ceil(Tq / 128)), block 128 threads (4 warps), dynamic shared memory
//   (128 + 2·64 + 2·64) · D_h · 2 bytes = 48 KiB (D_h 64) or 96 KiB (D_h 128); blockIdx.y is reversed so that the
//   query blocks with the most keys (the last ones) start first. Consecutive blockIdx.x share a kv head (L2 reuse).
// Each warp owns 32 query rows (two m16 tiles). Per key tile: S = Q·Kᵀ with mma.sync m16n8k16 (bf16 in, f32
//   accumulate), causal mask on the diagonal tiles only, online softmax with exp2 (scale folded into log2 e),
//   P rounded to bf16 and O += P·V with the same mma. K/V tiles are double-buffered with cp.async (16-byte copies,
//   zero-filled past kvEnd) into XOR-swizzled shared memory read by ldmatrix without bank conflicts.
//   The tile loads, S = Q·Kᵀ, the mask and the softmax update are kernels/attention_tile.cuh's (shared with
//   value_attention_dv.cu).
// Accumulation: f32 (scores, softmax statistics, output); output rounded to bf16 once at the end.
// Entry points: attention_prefill_d64, attention_prefill_d128 (same arguments).
//
// Switched variant (attention_prefill_switch_d64/_d128), the strict CommVQ prompt in one launch: each block of 128
// query rows is one W-block (W = 128, qStart a block start) whose keys before the block come from k/v (the cache's
// scratch: the compressed prefix dequantized, the sinks exact) and whose keys from the block's first position on
// come exact from kx/vx [rows from exactBase, H_kv·D_h] (the prompt's own rows). Key tiles of 64 never straddle the
// switch, which sits on a multiple of 128.

#include <cuda_bf16.h>

#include "attention_tile.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockM = 128;           // query rows per block
constexpr int kMTiles = 2;             // m16 tiles per warp: warp w owns rows 32w .. 32w + 31
constexpr int kBlockN = 64;            // keys per tile
constexpr int kNTiles = kBlockN / 8;   // n8 tiles of S per m16 tile
constexpr float kLog2e = 1.4426950408889634f;

template <int D, bool kSwitched>
__device__ __forceinline__ void prefill(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                        const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ kx,
                                        const __nv_bfloat16* __restrict__ vx, __nv_bfloat16* __restrict__ out, int Tq,
                                        int Hq, int Hkv, int qStart, int kvLength, int exactBase, float scale) {
  constexpr int kQBytes = kBlockM * D * 2;
  constexpr int kKVBytes = kBlockN * D * 2;
  constexpr int kDTiles = D / 8;    // n8 tiles of the output per m16 tile
  constexpr int kKSteps = D / 16;   // k16 steps of Q·Kᵀ
  constexpr bool kQInRegs = D <= 64;  // D 128 would need 64 more registers per thread: reread Q from shared memory

  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sQ = smem_addr(smem);
  const u32 sK = sQ + kQBytes;        // 2 stages
  const u32 sV = sK + 2 * kKVBytes;   // 2 stages

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
  const int keyLimit = min(kvEnd, qStart + m0 + rowsHere);  // this block reads keys [0, keyLimit)
  const int nTiles = (keyLimit + kBlockN - 1) / kBlockN;
  const __nv_bfloat16* kh = k + static_cast<size_t>(hkv) * D;
  const __nv_bfloat16* vh = v + static_cast<size_t>(hkv) * D;
  // key row n of the tile loads: the switched variant reads the block's own keys (n ≥ its first position) exact
  const int ownStart = qStart + m0;
  auto rowOf = [&](const __nv_bfloat16* base, const __nv_bfloat16* exact, int n) {
    if constexpr (kSwitched) {
      if (n >= ownStart) return exact + static_cast<size_t>(hkv) * D + static_cast<size_t>(n - exactBase) * ldkv;
    }
    return base + static_cast<size_t>(n) * ldkv;
  };

  load_tile<D, kBlockM, kThreads>(sQ, q + static_cast<size_t>(m0) * ldq + static_cast<size_t>(h) * D,
                                  ldq, rowsHere, tid);
  load_tile<D, kBlockN, kThreads>(sK, rowOf(kh, kx, 0), ldkv, keyLimit, tid);
  load_tile<D, kBlockN, kThreads>(sV, rowOf(vh, vx, 0), ldkv, keyLimit, tid);
  cp_async_commit();

  const float sl2 = scale * kLog2e;
  const int warpRow = m0 + warp * 32;         // first query row of this warp
  const int warpPosMin = qStart + warpRow;    // its absolute position
  const int warpPosMax = warpPosMin + 31;
  // This thread's rows: warpRow + mt·16 + (lane >> 2) + 8·hh, hh ∈ {0, 1}; its S/O columns: 8·n + 2·(lane & 3) + {0, 1}.
  // ldmatrix source offsets of k16 step 0 / d16 pair 0 (attention_tile.cuh says how later steps are reached).
  const u32 qOff = swz<D>(warp * 32 + (lane & 15), lane >> 4);               // A of Q·Kᵀ: rows 0-15, k 0-15
  const u32 kOff = swz<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);  // B of Q·Kᵀ: two n8 tiles of keys
  const u32 vOff = swz<D>((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);  // B of P·V (transposed): two d8 tiles

  float acc[kMTiles][kDTiles][4];
  float rowMax[kMTiles][2];
  float rowSum[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][dt][e] = 0.f;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      rowMax[mt][hh] = neg_inf();
      rowSum[mt][hh] = 0.f;
    }
  }
  u32 qa[kQInRegs ? kMTiles : 1][kQInRegs ? kKSteps : 1][4];
  u32 a[kMTiles][4];  // the A fragments of one k16 step of Q·Kᵀ

  for (int t = 0; t < nTiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < nTiles) {
      const int n1 = (t + 1) * kBlockN;
      load_tile<D, kBlockN, kThreads>(sK + (stage ^ 1) * kKVBytes, rowOf(kh, kx, n1), ldkv, keyLimit - n1, tid);
      load_tile<D, kBlockN, kThreads>(sV + (stage ^ 1) * kKVBytes, rowOf(vh, vx, n1), ldkv, keyLimit - n1, tid);
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
    if (n0 <= warpPosMax) {  // otherwise every key of the tile is in the future of all 32 rows of this warp
      const u32 sKs = sK + stage * kKVBytes;
      const u32 sVs = sV + stage * kKVBytes;

      // ---- S = Q·Kᵀ (raw dot products), causal mask ----
      float s[kMTiles][kNTiles][4];
      mma_abt<D, kQInRegs>(s, a, qa, sQ, qOff, sKs, kOff);
      causal_mask(s, n0, warpPosMin, kvEnd, lane);

      // ---- online softmax (log2 domain): P = 2^(S·sl2 − m), O rescaled as m grows ----
      online_softmax(s, rowMax, rowSum, sl2, [&](int mt, int hh, float alpha) {
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) {
          acc[mt][dt][2 * hh] *= alpha;
          acc[mt][dt][2 * hh + 1] *= alpha;
        }
      });

      // ---- O += P·V: the S accumulator layout of two n8 tiles is the A fragment of one k16 step ----
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
          ldmatrix_x4_trans(sVs + (vOff ^ (dp * 32)) + ks * 16 * D * 2, b0, b1, b2, b3);
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

  // ---- out = O / l, bf16 ----
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float l = rowSum[mt][hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = warpRow + mt * 16 + (lane >> 2) + 8 * hh;
      if (row < Tq) {
        __nv_bfloat16* o = out + static_cast<size_t>(row) * ldq + static_cast<size_t>(h) * D + 2 * (lane & 3);
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt)
          *reinterpret_cast<u32*>(o + dt * 8) = pack_bf16(acc[mt][dt][2 * hh] * inv, acc[mt][dt][2 * hh + 1] * inv);
      }
    }
}

}  // namespace

// Arguments: q, k, v, out as described above; Tq query rows; Hq, Hkv head counts (Hq a multiple of Hkv); qStart the
// absolute position of query row 0; kvLength the number of valid key rows (≥ qStart + Tq); scale = 1/sqrt(D_h).
extern "C" __global__ void __launch_bounds__(kThreads, 2)
    attention_prefill_d64(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                          const __nv_bfloat16* __restrict__ v, __nv_bfloat16* __restrict__ out, int Tq, int Hq,
                          int Hkv, int qStart, int kvLength, float scale) {
  prefill<64, false>(q, k, v, nullptr, nullptr, out, Tq, Hq, Hkv, qStart, kvLength, 0, scale);
}

extern "C" __global__ void __launch_bounds__(kThreads, 2)
    attention_prefill_d128(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                           const __nv_bfloat16* __restrict__ v, __nv_bfloat16* __restrict__ out, int Tq, int Hq,
                           int Hkv, int qStart, int kvLength, float scale) {
  prefill<128, false>(q, k, v, nullptr, nullptr, out, Tq, Hq, Hkv, qStart, kvLength, 0, scale);
}

// The switched variant: as above, plus kx, vx [rows from exactBase, H_kv·D_h] bf16, the exact keys and values of
// positions exactBase .. kvLength − 1; qStart is a multiple of 128 past the sinks, every block of 128 rows a W-block.
extern "C" __global__ void __launch_bounds__(kThreads, 2)
    attention_prefill_switch_d64(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                 const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ kx,
                                 const __nv_bfloat16* __restrict__ vx, __nv_bfloat16* __restrict__ out, int Tq,
                                 int Hq, int Hkv, int qStart, int kvLength, int exactBase, float scale) {
  prefill<64, true>(q, k, v, kx, vx, out, Tq, Hq, Hkv, qStart, kvLength, exactBase, scale);
}

extern "C" __global__ void __launch_bounds__(kThreads, 2)
    attention_prefill_switch_d128(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                  const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ kx,
                                  const __nv_bfloat16* __restrict__ vx, __nv_bfloat16* __restrict__ out, int Tq,
                                  int Hq, int Hkv, int qStart, int kvLength, int exactBase, float scale) {
  prefill<128, true>(q, k, v, kx, vx, out, Tq, Hq, Hkv, qStart, kvLength, exactBase, scale);
}
