// commvq_exact_logits.cu — logits of one decoding query token over the exact tokens of a CommVQ cache (sinks and the
// recent window, keys already rotated), so that one softmax spans [compressed logits ; exact logits]
// (commvq_softmax_stats.cu reduces these logits into the window's statistics and merges them with the chunks').
//
// Math, sequence b, query head h (kv head g = h / (H_q/H_kv)), exact token t < E_b:
//   s_t = (q[b, h] · k[b, t, g]) / √D_h
//
// Tensors:
//   q       [B, H_q·D_h]                 bf16  rotated queries
//   k       [B, window, H_kv·D_h]        bf16  rotated exact keys, rows t < E_b valid
//   exact   int32 [B]                          E_b
//   logits  [B, H_q, window]             f32   out
//
// Launch: grid (H_q, ceil(window / 16), B), block 128 threads: each 8-lane group takes one token, each lane D_h/8
//   consecutive channels (16-byte loads), reduced by three shuffles. Many small CTAs: the window is a latency problem.
// Accumulation: f32.
// Entry point: commvq_exact_logits.

#include <cuda_bf16.h>

namespace {
constexpr int kThreads = 128;
constexpr int kTokens = kThreads / 8;  // tokens per CTA
constexpr unsigned kFull = 0xffffffffu;
// the product of two bf16x2 words, in f32 (bf16 → f32 is a shift)
__device__ __forceinline__ float dot2(unsigned a, unsigned b) {
  return __uint_as_float(a << 16) * __uint_as_float(b << 16) + __uint_as_float(a & 0xffff0000u) * __uint_as_float(b & 0xffff0000u);
}
}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_exact_logits(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, const int* __restrict__ exact,
    float* __restrict__ logits, int Hq, int Hkv, int D, int window, float scale) {
  const int h = blockIdx.x;
  const int b = blockIdx.z;
  const int g = h / (Hq / Hkv);
  const int t = blockIdx.y * kTokens + (threadIdx.x >> 3);
  const int l8 = threadIdx.x & 7;
  const int per = D / 8;  // channels per lane: 8 or 16
  const int E = exact[b];
  const __nv_bfloat16* qh = q + (static_cast<size_t>(b) * Hq + h) * D + l8 * per;
  const __nv_bfloat16* kt = k + (static_cast<size_t>(b) * window + min(t, max(E - 1, 0))) * Hkv * D + static_cast<size_t>(g) * D + l8 * per;
  float dot = 0.f;
  for (int c = 0; c < per; c += 8) {
    const uint4 qv = *reinterpret_cast<const uint4*>(qh + c);
    const uint4 kv = t < E ? *reinterpret_cast<const uint4*>(kt + c) : make_uint4(0u, 0u, 0u, 0u);
    dot += dot2(qv.x, kv.x) + dot2(qv.y, kv.y) + dot2(qv.z, kv.z) + dot2(qv.w, kv.w);
  }
  dot += __shfl_xor_sync(kFull, dot, 4);
  dot += __shfl_xor_sync(kFull, dot, 2);
  dot += __shfl_xor_sync(kFull, dot, 1);
  if (l8 == 0 && t < E) logits[(static_cast<size_t>(b) * Hq + h) * window + t] = dot * scale;
}
