// value_decode.cu — TrainOps.decode and decodeBackward (spec §5.4), one token per block. With s = ls + 1e-6,
// n = ‖w‖₂ and α = (ρ + 1e-6)/(n + 1e-6):
//   decode:          v̂ = α·w ⊙ s
//   decode_backward: dw = α·(dv̂ ⊙ s) − α/(n + 1e-6)·(w/n)·Σ_j dv̂_j s_j w_j     (the radial term is 0 when n = 0)
//   w, dv̂, v̂, dw: [T, D] f32   rho: [T] f32   ls: [D] f32
// Launch: grid (T), block 256; the norms and the dot product by block reductions. f32 arithmetic.
#include "common.cuh"

extern "C" __global__ void value_decode_f32(float* vhat, const float* w, const float* rho, const float* ls, int D) {
  const size_t base = (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) ss += w[base + c] * w[base + c];
  const float alpha = (rho[blockIdx.x] + 1e-6f) / (sqrtf(block_sum(ss)) + 1e-6f);
  for (int c = threadIdx.x; c < D; c += blockDim.x) vhat[base + c] = w[base + c] * alpha * (ls[c] + 1e-6f);
}

extern "C" __global__ void value_decode_backward_f32(float* dw, const float* dvhat, const float* w, const float* rho,
                                                     const float* ls, int D) {
  const size_t base = (size_t)blockIdx.x * D;
  float ss = 0.f, dot = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float wc = w[base + c];
    ss += wc * wc;
    dot += dvhat[base + c] * (ls[c] + 1e-6f) * wc;
  }
  ss = block_sum(ss);
  dot = block_sum(dot);
  const float n = sqrtf(ss);
  const float alpha = (rho[blockIdx.x] + 1e-6f) / (n + 1e-6f);
  const float radial = n > 0.f ? alpha / (n + 1e-6f) * (dot / n) : 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x)
    dw[base + c] = alpha * dvhat[base + c] * (ls[c] + 1e-6f) - radial * w[base + c];
}
