// Key data preparation for the key codebook (spec §3.2): per-token norm over all G·D_h channels, then each head's
// channels permuted from HF (rotate-half) to PI (pair-interleaved) layout and divided by the norm.
//
//   x:     [T, G*D] f32, HF layout (pre-RoPE keys), rows of this chunk
//   scale: [G*D] f32 per-channel factor applied first, or null (benchmarks use it to shape random data)
//   v:     [G, N, D] f32, PI layout: v[g, n0 + t, 2j + u] = x[t, g*D + u*(D/2) + j] * s / ‖x_t·s‖
//   n2:    [N] f32, ‖x_t·s‖² (0 for an all-zero row, whose v row is then 0)
//   bad:   [1] i32, incremented once per row holding NaN or Inf
//
// Launch: grid (T), block 256 (one block per token); the norm by block_sum in f32.
#include "common.cuh"

extern "C" __global__ void key_prepare(const float* __restrict__ x, const float* __restrict__ scale, float* __restrict__ v,
                                       float* __restrict__ n2, int* __restrict__ bad, int n0, int N, int G, int D) {
  const int t = blockIdx.x;
  const int width = G * D;
  const float* row = x + (long long)t * width;
  float s = 0.f;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    const float a = row[c] * (scale ? scale[c] : 1.f);
    s += a * a;
  }
  s = block_sum(s);
  const bool finite = isfinite(s);
  if (threadIdx.x == 0) {
    n2[n0 + t] = finite ? s : 0.f;
    if (!finite) atomicAdd(bad, 1);
  }
  const float inv = (finite && s > 0.f) ? 1.f / sqrtf(s) : 0.f;
  const int P = D >> 1;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    const int g = c / D, k = c - g * D;  // k: PI index within the head
    const int j = k >> 1, u = k & 1;
    const int src = g * D + u * P + j;
    const float a = row[src] * (scale ? scale[src] : 1.f);
    v[((long long)g * N + n0 + t) * D + k] = a * inv;
  }
}
