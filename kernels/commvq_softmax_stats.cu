// commvq_softmax_stats.cu — the joint softmax over [compressed logits ; exact logits] of one decode step: merges the
// per-chunk statistics written by commvq_key_logits.cu and the exact window's entry (commvq_exact_logits.cu) into
// the row maximum M and the reciprocal of the normaliser Z, so that every weight is a_t = exp(s_t − M) / Z.
//
// Math, sequence b, query head h, entries i = chunks 0 .. ceil(N_b / chunk) − 1 and the exact slot, each (m_i, s_i)
// with s_i = Σ exp(logit − m_i) over its tokens:
//   M = max_i m_i,   Z = Σ_i s_i·exp(m_i − M);   out = (M, 1/Z), or (0, 0) when the row holds no token.
//
// Tensors:
//   stats       [B, H_q, statStride] float2  f32
//   compressed  int32 [B]                          N_b
//   ms          [B, H_q] float2              f32   out: (M, 1/Z)
//
// Launch: grid (H_q, B), block 128 threads; each thread merges a strided subset, then the block merges the threads.
// Accumulation: f32.
// Entry point: commvq_softmax_stats.

namespace {
constexpr int kThreads = 128;
constexpr unsigned kFull = 0xffffffffu;
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }

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
}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_softmax_stats(const float2* __restrict__ stats,
                                                                            const int* __restrict__ compressed,
                                                                            float2* __restrict__ ms, int Hq,
                                                                            int statStride, int chunk, int exactSlot) {
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  const float2* row = stats + (static_cast<size_t>(b) * Hq + h) * statStride;
  const int nChunks = (compressed[b] + chunk - 1) / chunk;
  float m = neg_inf();
  float s = 0.f;
  for (int i = threadIdx.x; i < nChunks; i += kThreads) merge(m, s, row[i].x, row[i].y);
  if (threadIdx.x == 0) merge(m, s, row[exactSlot].x, row[exactSlot].y);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge(m, s, __shfl_xor_sync(kFull, m, o), __shfl_xor_sync(kFull, s, o));
  __shared__ float2 red[kThreads / 32];
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = make_float2(m, s);
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) merge(m, s, red[w].x, red[w].y);
    ms[static_cast<size_t>(b) * Hq + h] = s > 0.f ? make_float2(m, 1.f / s) : make_float2(0.f, 0.f);
  }
}
