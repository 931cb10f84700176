// commvq_exact_logits.cu — logits of one decoding query token over the exact tokens of a CommVQ cache (sinks and the
// recent window, keys already rotated), plus their softmax statistics, so that one softmax spans
// [compressed logits ; exact logits] (commvq_softmax_stats.cu merges the statistics).
//
// Math, sequence b, query head h (kv head g = h / (H_q/H_kv)), exact token t < E_b:
//   s_t = (q[b, h] · k[b, t, g]) / √D_h;   stats = (max_t s_t, Σ_t exp(s_t − max))   ((−∞, 0) when E_b = 0)
//
// Tensors:
//   q       [B, H_q·D_h]                 bf16  rotated queries
//   k       [B, window, H_kv·D_h]        bf16  rotated exact keys, rows t < E_b valid
//   exact   int32 [B]                          E_b
//   logits  [B, H_q, window]             f32   out
//   stats   [B, H_q, statStride] float2  f32   out: entry `statSlot`
//
// Launch: grid (H_q, B), block 128 threads (4 warps), dynamic shared memory window·4 bytes. A warp takes one token at
//   a time, its lanes split D_h; the block then reduces max and sum over the row kept in shared memory.
// Accumulation: f32.
// Entry point: commvq_exact_logits.

#include <cuda_bf16.h>

namespace {
constexpr int kThreads = 128;
constexpr unsigned kFull = 0xffffffffu;
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }
}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_exact_logits(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, const int* __restrict__ exact,
    float* __restrict__ logits, float2* __restrict__ stats, int Hq, int Hkv, int D, int window, int statStride,
    int statSlot, float scale) {
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  const int g = h / (Hq / Hkv);
  const int E = exact[b];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  extern __shared__ float sl[];
  __shared__ float red[2][kThreads / 32];

  const __nv_bfloat16* qh = q + (static_cast<size_t>(b) * Hq + h) * D;
  float* out = logits + (static_cast<size_t>(b) * Hq + h) * window;
  for (int t = warp; t < E; t += kThreads / 32) {
    const __nv_bfloat16* kt = k + (static_cast<size_t>(b) * window + t) * Hkv * D + static_cast<size_t>(g) * D;
    float dot = 0.f;
    for (int c = lane; c < D; c += 32) dot += __bfloat162float(qh[c]) * __bfloat162float(kt[c]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(kFull, dot, o);
    if (lane == 0) {
      sl[t] = dot * scale;
      out[t] = dot * scale;
    }
  }
  __syncthreads();

  float m = neg_inf();
  for (int t = threadIdx.x; t < E; t += kThreads) m = fmaxf(m, sl[t]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, o));
  if (lane == 0) red[0][warp] = m;
  __syncthreads();
  m = red[0][0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, red[0][w]);
  float sum = 0.f;
  for (int t = threadIdx.x; t < E; t += kThreads) sum += expf(sl[t] - m);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
  if (lane == 0) red[1][warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) total += red[1][w];
    stats[(static_cast<size_t>(b) * Hq + h) * statStride + statSlot] = make_float2(m, total);
  }
}
