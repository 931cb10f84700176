// value_encode_norm.cu — the first steps of the argmax value encoder at inference (spec §5.3 steps 1–3 and the
// encoder's LayerNorm), fused into one pass per token for the bf16 GEMMs that follow:
//   u = v / (ls + 1e-6),  ρ = ‖u‖₂,  û = u / (ρ + 1e-6),  x = γ ⊙ (û − μ)·rsqrt(var + eps) + β   (μ, var over û)
//   v:   [T, D] bf16 (the layer's values, HF layout)   ls, γ, β: [D] f32
//   x:   [T, D] bf16 (rounded once, nearest even)      rho: [T] f32
// The arithmetic is value_prescale's then value_layer_norm's, in the same order (the training path's f32 numbers),
// with one rounding of x to bf16 at the end: the encoder's first GEMM reads bf16 (its weights are bf16 already).
// Launch: grid (T), block 256 (a multiple of 32, ≤ 1024), dynamic shared memory D f32 (û of the row).
// Accumulation: f32, block reductions.
#include "common.cuh"

extern "C" __global__ void value_encode_norm(__nv_bfloat16* __restrict__ x, float* __restrict__ rho, const __nv_bfloat16* __restrict__ v,
                                             const float* __restrict__ ls, const float* __restrict__ gamma, const float* __restrict__ beta,
                                             int D, float eps) {
  extern __shared__ float u[];  // [D]
  const size_t base = (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float uc = bf2f(v[base + c]) / (ls[c] + 1e-6f);
    u[c] = uc;
    ss += uc * uc;
  }
  const float r = sqrtf(block_sum(ss));
  if (threadIdx.x == 0) rho[blockIdx.x] = r;
  const float denom = r + 1e-6f;
  float s = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float h = u[c] / denom;  // own entries only: no sync needed
    u[c] = h;
    s += h;
  }
  const float mean = block_sum(s) / D;
  float q = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float d = u[c] - mean;
    q += d * d;
  }
  const float rstd = 1.f / sqrtf(block_sum(q) / D + eps);
  for (int c = threadIdx.x; c < D; c += blockDim.x) x[base + c] = f2bf(gamma[c] * ((u[c] - mean) * rstd) + beta[c]);
}
