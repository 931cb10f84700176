// attention_decode.cu — causal grouped-query attention for a few query rows over a long dense bf16 KV cache
// (decode steps, short chunks), split over the sequence ("flash-decoding") so that one kv head's keys are spread
// over the whole GPU.
//
// Math, per query row i (absolute position p = qStart + i) and query head h (kv head g = h / G, G = H_q / H_kv):
//   s_j = (q[i, h] · k[j, g]) / sqrt(D_h) for keys j = 0 .. min(p, kvEnd − 1),  out[i, h] = Σ_j softmax(s)_j · v[j, g]
// with kvEnd = min(kvLength, qStart + Tq). The keys are cut into units of `unitKeys` keys (a multiple of 32); each
// warp owns one (kv head, unit) and all RT = Tq·G query rows of that kv head (16 at a time: one mma m16 tile), so
// every K/V byte is read once per kv head and shared by the whole GQA group. A warp keeps an online softmax over its
// unit and writes an unnormalized partial: m (row max, log2 domain), l (Σ exp2), o (Σ exp2 · v). The combine kernel
// merges the partials: out = Σ_u 2^(m_u − M) o_u / Σ_u 2^(m_u − M) l_u, M = max_u m_u.
//
// Tensors (row-major, Hugging Face head layout: head h's channels at h·D_h .. h·D_h + D_h − 1):
//   q       [Tq, H_q·D_h]               bf16   RoPE-rotated queries
//   k, v    [≥kvEnd, H_kv·D_h]          bf16   the cache; only rows < kvEnd are read
//   partO   [H_kv, nUnits, RT, D_h]     f32    workspace: per-unit unnormalized outputs (row r = i·G + h mod G)
//   partML  [H_kv, nUnits, RT] float2   f32    workspace: per-unit (m, l)
//   out     [Tq, H_q·D_h]               bf16
//   meta    int32[2] = {qStart, kvLength} on the device, or null to use the scalar arguments. With meta, one
//           captured CUDA graph can be replayed while the cache grows: the grid is sized for the largest length
//           (nUnits = ceil(maxKvLength / unitKeys)) and warps whose unit starts at or past kvEnd exit at once;
//           the combine kernel reads the same meta and merges only the units that hold keys.
//
// Launch, split kernel: grid (ceil(RT / 16), ceil(nUnits / W), H_kv), block 32·W threads (W = 1..4 warps, one unit
//   each; 4 where shared memory allows), dynamic shared memory W · 3 stages · 32 keys · 2 (K, V) · D_h · 2 bytes =
//   W · 24 KiB (D_h 64) or W · 48 KiB (D_h 128), 192 KiB for W = 4 on Hopper: each warp streams its own K/V tiles with
//   cp.async 16-byte copies, 3 tiles deep, and needs no block barrier. Query-row tiles of one unit are neighbours in
//   blockIdx.x, so when RT > 16 the second read of a K/V tile mostly hits L2. S = Q·Kᵀ and O += P·V use mma.sync
//   m16n8k16 (bf16 in, f32 accumulate; tensor cores make the arithmetic negligible next to the loads); P is rounded
//   to bf16 as in the prefill.
// Launch, combine kernel: grid (H_q, Tq), block 256 threads, static shared memory only; each thread loads 8 units'
//   partials before using them, so a few hundred units cost a few load latencies, not one each.
// Accumulation: f32 throughout; only the final output is rounded to bf16.
// Entry points: attention_decode_split_d64/_d128, attention_decode_combine_d64/_d128.

#include <cuda_bf16.h>

#include "tensor_core.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTileKeys = 32;  // keys per tile; unitKeys is a multiple of this
constexpr int kStages = 3;     // tiles in flight per warp
constexpr int kRows = 16;      // query rows (i, head-in-group) per m16 tile
constexpr int kCombineThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

// One warp copies a 32-key × D tile (row stride ld) into swizzled shared memory; keys ≥ valid read as zero.
template <int D>
__device__ __forceinline__ void load_tile_warp(u32 dst, const __nv_bfloat16* src, size_t ld, int valid,
                                               int lane) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kRowStep = 32 / kChunksPerRow;  // 2 (D 128) or 4 (D 64) rows per warp-wide copy
  const int r0 = lane / kChunksPerRow;
  const int c = lane % kChunksPerRow;
  const __nv_bfloat16* p = src + static_cast<size_t>(r0) * ld + c * 8;
  const size_t step = static_cast<size_t>(kRowStep) * ld;
#pragma unroll
  for (int i = 0; i < kTileKeys / kRowStep; ++i) {
    const int r = r0 + i * kRowStep;
    const bool ok = r < valid;
    cp_async_16(dst + swz<D>(r, c), ok ? p : src, ok);
    p += step;
  }
}

template <int D>
__device__ __forceinline__ void decode_split(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                             const __nv_bfloat16* __restrict__ v, float* __restrict__ partO,
                                             float2* __restrict__ partML, int Tq, int Hq, int Hkv, int qStart,
                                             int kvLength, float scale, int unitKeys, int nUnits,
                                             const int* __restrict__ meta) {
  constexpr int kTileBytes = kTileKeys * D * 2;
  constexpr int kWarpBytes = kStages * 2 * kTileBytes;
  constexpr int kKSteps = D / 16;
  constexpr int kDTiles = D / 8;
  constexpr int kNTiles = kTileKeys / 8;

  if (meta != nullptr) {
    qStart = meta[0];
    kvLength = meta[1];
  }
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int unit = blockIdx.y * (blockDim.x >> 5) + warp;  // 1-4 warps per block, as shared memory allows
  const int hkv = blockIdx.z;
  const int G = Hq / Hkv;
  const int RT = Tq * G;
  const int kvEnd = min(kvLength, qStart + Tq);
  const int keyBegin = unit * unitKeys;
  if (unit >= nUnits || keyBegin >= kvEnd) return;  // past the cache (graph replay with a shorter length): no work
  const int keyEnd = min(keyBegin + unitKeys, kvEnd);
  const int nTiles = (keyEnd - keyBegin + kTileKeys - 1) / kTileKeys;

  const size_t ldq = static_cast<size_t>(Hq) * D;
  const size_t ldkv = static_cast<size_t>(Hkv) * D;
  const __nv_bfloat16* kh = k + static_cast<size_t>(keyBegin) * ldkv + static_cast<size_t>(hkv) * D;
  const __nv_bfloat16* vh = v + static_cast<size_t>(keyBegin) * ldkv + static_cast<size_t>(hkv) * D;

  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sK = smem_addr(smem) + warp * kWarpBytes;  // stage s: K at sK + 2s·tile, V right after
  auto issue = [&](int t) {
    if (t < nTiles) {
      const u32 base = sK + (t % kStages) * 2 * kTileBytes;
      const int valid = keyEnd - keyBegin - t * kTileKeys;
      const size_t off = static_cast<size_t>(t) * kTileKeys * ldkv;
      load_tile_warp<D>(base, kh + off, ldkv, valid, lane);
      load_tile_warp<D>(base + kTileBytes, vh + off, ldkv, valid, lane);
    }
    cp_async_commit();  // an empty group past the end keeps the wait count uniform
  };
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) issue(t);

  // This thread's rows r = rowTile·16 + (lane >> 2) + 8·hh; row r is query i = r / G of head hkv·G + r mod G.
  const int rowBase = blockIdx.x * kRows + (lane >> 2);
  int limit[2];  // last visible key of each of this thread's rows
  u32 qa[kKSteps][4];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = rowBase + 8 * hh;
    const bool ok = r < RT;
    const int i = ok ? r / G : 0;
    limit[hh] = min(qStart + i, kvEnd - 1);
    const u32* qr =
        reinterpret_cast<const u32*>(q + i * ldq + static_cast<size_t>(hkv * G + (ok ? r % G : 0)) * D);
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      // A fragment: a0/a1 rows g/g+8 at k 2(lane&3), a2/a3 the same rows at k + 8 (4-byte bf16 pairs)
      qa[kk][hh] = ok ? qr[kk * 8 + (lane & 3)] : 0u;
      qa[kk][hh + 2] = ok ? qr[kk * 8 + 4 + (lane & 3)] : 0u;
    }
  }
  const int limitMin = min(limit[0], limit[1]);
  const int warpLimitMin = __reduce_min_sync(0xffffffffu, limitMin);

  const float sl2 = scale * kLog2e;
  float acc[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;
  float rowMax[2] = {neg_inf(), neg_inf()};
  float rowSum[2] = {0.f, 0.f};

  const u32 kOff = swz<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
  const u32 vOff = swz<D>((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

  for (int t = 0; t < nTiles; ++t) {
    issue(t + kStages - 1);
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const u32 sKs = sK + (t % kStages) * 2 * kTileBytes;
    const u32 sVs = sKs + kTileBytes;
    const int n0 = keyBegin + t * kTileKeys;

    float s[kNTiles][4];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk)
#pragma unroll
      for (int np = 0; np < kNTiles / 2; ++np) {
        u32 b0, b1, b2, b3;
        ldmatrix_x4(sKs + (kOff ^ (kk * 32)) + np * 16 * D * 2, b0, b1, b2, b3);
        mma_bf16(s[2 * np], qa[kk], b0, b1);
        mma_bf16(s[2 * np + 1], qa[kk], b2, b3);
      }

    if (n0 + kTileKeys - 1 > warpLimitMin) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (n0 + nt * 8 + 2 * (lane & 3) + (e & 1) > limit[e >> 1]) s[nt][e] = neg_inf();
    }

#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float mx = neg_inf();
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * hh], s[nt][2 * hh + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mNew = fmaxf(rowMax[hh], mx);
      const float mScaled = mNew == neg_inf() ? 0.f : mNew * sl2;
      const float alpha = fast_exp2(rowMax[hh] * sl2 - mScaled);
      rowMax[hh] = mNew;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float p = fast_exp2(fmaf(s[nt][2 * hh + c], sl2, -mScaled));
          s[nt][2 * hh + c] = p;
          sum += p;
        }
      rowSum[hh] = rowSum[hh] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < kDTiles; ++dt) {
        acc[dt][2 * hh] *= alpha;
        acc[dt][2 * hh + 1] *= alpha;
      }
    }

#pragma unroll
    for (int ks = 0; ks < kTileKeys / 16; ++ks) {
      u32 pa[4];
      pa[0] = pack_bf16(s[2 * ks][0], s[2 * ks][1]);
      pa[1] = pack_bf16(s[2 * ks][2], s[2 * ks][3]);
      pa[2] = pack_bf16(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      pa[3] = pack_bf16(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        u32 b0, b1, b2, b3;
        ldmatrix_x4_trans(sVs + (vOff ^ (dp * 32)) + ks * 16 * D * 2, b0, b1, b2, b3);
        mma_bf16(acc[2 * dp], pa, b0, b1);
        mma_bf16(acc[2 * dp + 1], pa, b2, b3);
      }
    }
    __syncwarp();  // every lane is done with this stage before the next iteration refills it
  }
  cp_async_wait<0>();

  // ---- partials: unnormalized o, and (m in the log2 domain, l) ----
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float l = rowSum[hh];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = rowBase + 8 * hh;
    if (r >= RT) continue;
    const size_t slot = (static_cast<size_t>(hkv) * nUnits + unit) * RT + r;
    if ((lane & 3) == 0) partML[slot] = make_float2(rowMax[hh] == neg_inf() ? neg_inf() : rowMax[hh] * sl2, l);
    float* o = partO + slot * D + 2 * (lane & 3);
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
      *reinterpret_cast<float2*>(o + dt * 8) = make_float2(acc[dt][2 * hh], acc[dt][2 * hh + 1]);
  }
}

template <int D>
__device__ __forceinline__ void decode_combine(const float* __restrict__ partO, const float2* __restrict__ partML,
                                               __nv_bfloat16* __restrict__ out, int Tq, int Hq, int Hkv, int qStart,
                                               int kvLength, int unitKeys, int nUnits, const int* __restrict__ meta) {
  constexpr int kVecs = D / 4;                       // float4 lanes per row
  constexpr int kGroups = kCombineThreads / kVecs;   // units summed side by side
  constexpr int kBatch = 8;                          // units each thread loads before using any (latency hiding)
  __shared__ float4 redO[kGroups][kVecs];
  __shared__ float redL[kGroups];
  __shared__ float redM[kCombineThreads / 32];

  if (meta != nullptr) {
    qStart = meta[0];
    kvLength = meta[1];
  }
  const int h = blockIdx.x;
  const int i = blockIdx.y;
  const int G = Hq / Hkv;
  const int RT = Tq * G;
  const int hkv = h / G;
  const int r = i * G + h % G;
  const int kvEnd = min(kvLength, qStart + Tq);
  const int nValid = kvEnd <= 0 ? 0 : min(nUnits, (kvEnd + unitKeys - 1) / unitKeys);
  const size_t base = static_cast<size_t>(hkv) * nUnits * RT + r;  // slot of unit u: base + u·RT
  const int tid = threadIdx.x;

  float m = neg_inf();
  for (int u = tid; u < nValid; u += kCombineThreads) m = fmaxf(m, partML[base + static_cast<size_t>(u) * RT].x);
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((tid & 31) == 0) redM[tid >> 5] = m;
  __syncthreads();
  float M = redM[0];
#pragma unroll
  for (int w = 1; w < kCombineThreads / 32; ++w) M = fmaxf(M, redM[w]);

  const int vec = tid % kVecs;
  const int grp = tid / kVecs;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float l = 0.f;
  if (M != neg_inf()) {
    for (int u0 = grp; u0 < nValid; u0 += kBatch * kGroups) {
      float2 ml[kBatch];
      float4 o[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int u = u0 + j * kGroups;
        const size_t slot = base + static_cast<size_t>(u) * RT;
        ml[j] = u < nValid ? partML[slot] : make_float2(neg_inf(), 0.f);
        o[j] = u < nValid ? reinterpret_cast<const float4*>(partO + slot * D)[vec] : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const float w = exp2f(ml[j].x - M);  // exactly 0 for a unit where this row saw no key (m = −inf)
        l += w * ml[j].y;
        acc.x += w * o[j].x;
        acc.y += w * o[j].y;
        acc.z += w * o[j].z;
        acc.w += w * o[j].w;
      }
    }
  }
  redO[grp][vec] = acc;
  if (vec == 0) redL[grp] = l;
  __syncthreads();
  if (grp != 0) return;
#pragma unroll
  for (int g = 1; g < kGroups; ++g) {
    const float4 o = redO[g][vec];
    acc.x += o.x;
    acc.y += o.y;
    acc.z += o.z;
    acc.w += o.w;
    l += redL[g];
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
  uint2 packed;
  packed.x = pack_bf16(acc.x * inv, acc.y * inv);
  packed.y = pack_bf16(acc.z * inv, acc.w * inv);
  *reinterpret_cast<uint2*>(out + static_cast<size_t>(i) * Hq * D + static_cast<size_t>(h) * D + vec * 4) = packed;
}

}  // namespace

// Split kernel arguments: q, k, v, partO, partML (workspace), Tq, Hq, Hkv, qStart, kvLength, scale = 1/sqrt(D_h),
// unitKeys (keys per warp, a multiple of 32), nUnits (units the workspace and grid were sized for), meta (or null).
extern "C" __global__ void __launch_bounds__(kThreads)
    attention_decode_split_d64(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                               const __nv_bfloat16* __restrict__ v, float* __restrict__ partO,
                               float2* __restrict__ partML, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                               float scale, int unitKeys, int nUnits, const int* __restrict__ meta) {
  decode_split<64>(q, k, v, partO, partML, Tq, Hq, Hkv, qStart, kvLength, scale, unitKeys, nUnits, meta);
}

extern "C" __global__ void __launch_bounds__(kThreads)
    attention_decode_split_d128(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                const __nv_bfloat16* __restrict__ v, float* __restrict__ partO,
                                float2* __restrict__ partML, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                                float scale, int unitKeys, int nUnits, const int* __restrict__ meta) {
  decode_split<128>(q, k, v, partO, partML, Tq, Hq, Hkv, qStart, kvLength, scale, unitKeys, nUnits, meta);
}

// Combine kernel arguments: partO, partML, out, Tq, Hq, Hkv, qStart, kvLength, unitKeys, nUnits, meta (or null):
// the same values the split kernel was given.
extern "C" __global__ void __launch_bounds__(kCombineThreads)
    attention_decode_combine_d64(const float* __restrict__ partO, const float2* __restrict__ partML,
                                 __nv_bfloat16* __restrict__ out, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                                 int unitKeys, int nUnits, const int* __restrict__ meta) {
  decode_combine<64>(partO, partML, out, Tq, Hq, Hkv, qStart, kvLength, unitKeys, nUnits, meta);
}

extern "C" __global__ void __launch_bounds__(kCombineThreads)
    attention_decode_combine_d128(const float* __restrict__ partO, const float2* __restrict__ partML,
                                  __nv_bfloat16* __restrict__ out, int Tq, int Hq, int Hkv, int qStart, int kvLength,
                                  int unitKeys, int nUnits, const int* __restrict__ meta) {
  decode_combine<128>(partO, partML, out, Tq, Hq, Hkv, qStart, kvLength, unitKeys, nUnits, meta);
}
