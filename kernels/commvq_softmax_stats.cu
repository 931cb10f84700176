// commvq_softmax_stats.cu — the joint softmax over [compressed logits ; exact logits] of one decode step: reduces the
// exact window's logits (commvq_exact_logits.cu) into their (max, Σexp), merges them with the per-chunk statistics
// written by commvq_key_logits.cu into the row maximum M and the reciprocal of the normaliser Z, so that every weight
// is a_t = exp(s_t − M) / Z.
//
// Math, sequence b, query head h, entries i = chunks 0 .. ceil(N_b / chunk) − 1 and the exact window, each (m_i, s_i)
// with s_i = Σ exp(logit − m_i) over its tokens:
//   M = max_i m_i,   Z = Σ_i s_i·exp(m_i − M);   out = (M, 1/Z), or (0, 0) when the row holds no token.
//
// Tensors:
//   stats       [B, H_q, statStride] float2  f32   chunk entries in; the window's entry written at `exactSlot`
//   exactLogits [B, H_q, window]         f32
//   compressed  int32 [B]                          N_b
//   exact       int32 [B]                          E_b
//   ms          [B, H_q] float2              f32   out: (M, 1/Z)
//
// Launch: grid (H_q, B), block 128 threads; each thread merges a strided subset of the chunks and of the window's
//   logits, then the block merges the threads (window and chunks kept apart until the end).
// Accumulation: f32.
// Entry point: commvq_softmax_stats.

#include "tensor_core.cuh"  // neg_inf

namespace {
constexpr int kThreads = 128;
constexpr unsigned kFull = 0xffffffffu;

// (m, s) ⊕ (m2, s2), where an empty entry is (−∞, 0)
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  if (s2 == 0.f) return;
  if (s == 0.f) {
    m = m2;
    s = s2;
    return;
  }
  const float M = fmaxf(m, m2);
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

// block-wide merge; every thread gets the result
__device__ __forceinline__ float2 block_merge(float m, float s, float2* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge(m, s, __shfl_xor_sync(kFull, m, o), __shfl_xor_sync(kFull, s, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = make_float2(m, s);
  __syncthreads();
  float2 r = red[0];
  for (int w = 1; w < kThreads / 32; ++w) merge(r.x, r.y, red[w].x, red[w].y);
  return r;
}
}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_softmax_stats(
    float2* __restrict__ stats, const float* __restrict__ exactLogits, const int* __restrict__ compressed,
    const int* __restrict__ exact, float2* __restrict__ ms, int Hq, int statStride, int chunk, int exactSlot,
    int window) {
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  float2* row = stats + (static_cast<size_t>(b) * Hq + h) * statStride;
  const float* lg = exactLogits + (static_cast<size_t>(b) * Hq + h) * window;
  const int nChunks = (compressed[b] + chunk - 1) / chunk;
  const int E = exact[b];
  __shared__ float2 red[kThreads / 32];

  float me = neg_inf();
  float se = 0.f;
  for (int t = threadIdx.x; t < E; t += kThreads) merge(me, se, lg[t], 1.f);
  const float2 ex = block_merge(me, se, red);

  float m = neg_inf();
  float s = 0.f;
  for (int i = threadIdx.x; i < nChunks; i += kThreads) merge(m, s, row[i].x, row[i].y);
  float2 all = block_merge(m, s, red);
  merge(all.x, all.y, ex.x, ex.y);
  if (threadIdx.x == 0) {
    row[exactSlot] = ex;
    ms[static_cast<size_t>(b) * Hq + h] = all.y > 0.f ? make_float2(all.x, 1.f / all.y) : make_float2(0.f, 0.f);
  }
}
