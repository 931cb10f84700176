// commvq_value_out.cu — the attention output of one decode step of a CommVQ cache: the compressed tokens' part from
// the weighted bit sums S (commvq_value_bits.cu) times the value codebook, then the per-channel scale (the corrected
// order of spec §6.8 / §7.2: the scale acts on channels, after the codebook), plus the exact tokens' part.
//
// Math, sequence b, query head h (kv head g), channel c < D_h, with (M, 1/Z) the joint softmax statistics:
//   out[b, h, c] = (Σ_d S[b, d, h] · E[d, g·D_h + c]) · (ls[g·D_h + c] + 1e-6)
//                + Σ_{t < E_b} exp(s_t − M)/Z · v[b, t, g·D_h + c]
//
// Tensors:
//   S        [B, N_c, Hp]              f32   weighted bit sums (Hp ≥ H_q: padded head stride)
//   ms       [B, H_q] float2           f32   (M, 1/Z)
//   E        [N_c, H_kv·D_h]           bf16  value codebook
//   ls       [H_kv·D_h]                f32   per-channel scale
//   logits   [B, H_q, window]          f32   exact-token logits (commvq_exact_logits.cu)
//   v        [B, window, H_kv·D_h]     bf16  exact values, rows t < E_b valid
//   exact    int32 [B]                       E_b
//   partial  [B, 8 + 4, H_q·D_h]       f32   workspace: 8 runs of codebook rows, then 4 runs of exact tokens
//   out      [B, H_q·D_h]              f32 or bf16
//
// Launch, partial kernel: grid (B·H_kv, D_h/64, 12), block 256 threads (8 warps). A CTA owns 64 channels of one kv
//   head and one run of rows (N_c/8 codebook rows, or ceil(E_b/4) exact tokens: runs depend on the sequence's own
//   lengths only); warp w takes rows w, w + 8, …, lane l channels 2l, 2l + 1 (one 128-byte row slice per warp load),
//   for the group's query heads in blocks of 4 (E rows are read once per block of heads); the 8 warps are added in
//   shared memory in a fixed order. Wide on purpose: one CTA per head streaming E serially was latency-bound.
// Launch, final kernel: grid (ceil(H_q·D_h / 256), B), block 256: out = Σ codebook runs · (ls + 1e-6) + Σ exact runs.
// Accumulation: f32; only the final store rounds (bf16 entry point).
// Entry points: commvq_value_out_partial, commvq_value_out_f32, commvq_value_out_bf16.

#include <cuda_bf16.h>

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kCodeRuns = 8;
constexpr int kExactRuns = 4;
constexpr int kHeadBlock = 4;
constexpr int kChannels = 64;  // channels per partial CTA: two per lane

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ void value_final(const float* __restrict__ partial, const float* __restrict__ ls,
                                           T* __restrict__ out, int Hq, int Hkv, int D) {
  const int b = blockIdx.y;
  const int F = Hq * D;
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i >= F) return;
  const int h = i / D;
  const int c = i % D;
  const int g = h / (Hq / Hkv);
  const float* p = partial + static_cast<size_t>(b) * (kCodeRuns + kExactRuns) * F + i;
  float q = 0.f;
#pragma unroll
  for (int z = 0; z < kCodeRuns; ++z) q += p[static_cast<size_t>(z) * F];
  float e = 0.f;
#pragma unroll
  for (int z = kCodeRuns; z < kCodeRuns + kExactRuns; ++z) e += p[static_cast<size_t>(z) * F];
  store(out + static_cast<size_t>(b) * F + i, q * (ls[g * D + c] + 1e-6f) + e);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_out_partial(
    const float* __restrict__ S, const float2* __restrict__ ms, const __nv_bfloat16* __restrict__ E,
    const float* __restrict__ logits, const __nv_bfloat16* __restrict__ v, const int* __restrict__ exact,
    float* __restrict__ partial, int Hq, int Hkv, int Hp, int D, int Nc, int window) {
  const int b = blockIdx.x / Hkv;
  const int g = blockIdx.x % Hkv;
  const int c0 = blockIdx.y * kChannels;
  const int z = blockIdx.z;
  const int G = Hq / Hkv;
  const int F = Hkv * D;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const bool code = z < kCodeRuns;
  int r0, r1;
  if (code) {
    const int per = Nc / kCodeRuns;
    r0 = z * per;
    r1 = r0 + per;
  } else {
    const int Eb = exact[b];
    const int per = (Eb + kExactRuns - 1) / kExactRuns;
    r0 = min(Eb, (z - kCodeRuns) * per);
    r1 = min(Eb, r0 + per);
  }
  // rows: codebook rows d of E, or exact tokens t of v (same channel layout g·D_h + c)
  const __nv_bfloat16* rows = code ? E + static_cast<size_t>(g) * D + c0 + 2 * lane
                                   : v + static_cast<size_t>(b) * window * F + static_cast<size_t>(g) * D + c0 + 2 * lane;
  const float* Sb = S + static_cast<size_t>(b) * Nc * Hp;
  __shared__ float2 red[kWarps][kHeadBlock][32];

  for (int hb = 0; hb < G; hb += kHeadBlock) {
    const int nh = min(kHeadBlock, G - hb);
    const int h0 = g * G + hb;
    float2 mz[kHeadBlock];
#pragma unroll
    for (int k = 0; k < kHeadBlock; ++k) mz[k] = !code && k < nh ? ms[static_cast<size_t>(b) * Hq + h0 + k] : make_float2(0.f, 0.f);
    float2 acc[kHeadBlock];
#pragma unroll
    for (int k = 0; k < kHeadBlock; ++k) acc[k] = make_float2(0.f, 0.f);
#pragma unroll 4
    for (int r = r0 + warp; r < r1; r += kWarps) {
      const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(rows + static_cast<size_t>(r) * F));
#pragma unroll
      for (int k = 0; k < kHeadBlock; ++k) {
        if (k < nh) {
          const float w = code ? Sb[static_cast<size_t>(r) * Hp + h0 + k]
                               : expf(logits[(static_cast<size_t>(b) * Hq + h0 + k) * window + r] - mz[k].x) * mz[k].y;
          acc[k].x += w * x.x;
          acc[k].y += w * x.y;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kHeadBlock; ++k) red[warp][k][lane] = acc[k];
    __syncthreads();
    {
      const int k = threadIdx.x >> 6;  // head of the block
      const int ch = threadIdx.x & 63;
      if (k < nh) {
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          const float2 a = red[w][k][ch >> 1];
          sum += (ch & 1) ? a.y : a.x;
        }
        partial[(static_cast<size_t>(b) * (kCodeRuns + kExactRuns) + z) * Hq * D + static_cast<size_t>(h0 + k) * D + c0 + ch] = sum;
      }
    }
    __syncthreads();
  }
}

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_out_f32(const float* partial, const float* ls,
                                                                            float* out, int Hq, int Hkv, int D) {
  value_final(partial, ls, out, Hq, Hkv, D);
}

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_out_bf16(const float* partial, const float* ls,
                                                                             __nv_bfloat16* out, int Hq, int Hkv,
                                                                             int D) {
  value_final(partial, ls, out, Hq, Hkv, D);
}
