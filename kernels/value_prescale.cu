// value_prescale.cu — TrainOps.prescale (spec §5.3 steps 1–3), one token per block:
//   u = v / (ls + 1e-6),  ρ = ‖u‖₂,  û = u / (ρ + 1e-6).
//   v:    [T, D] f32 / bf16 / f16 (entry value_prescale_{f32,bf16,f16})   ls: [D] f32
//   uhat: [T, D] f32                                                      rho: [T] f32
// Launch: grid (T), block 256 (a multiple of 32, ≤ 1024). f32 arithmetic, the sum of squares by a block reduction.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void prescale_row(float* uhat, float* rho, const T* v, const float* ls, int D) {
  const size_t base = (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float u = to_f32<T>(v[base + c]) / (ls[c] + 1e-6f);
    uhat[base + c] = u;
    ss += u * u;
  }
  const float r = sqrtf(block_sum(ss));
  if (threadIdx.x == 0) rho[blockIdx.x] = r;
  const float denom = r + 1e-6f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) uhat[base + c] = uhat[base + c] / denom;  // own writes: no sync
}

extern "C" __global__ void value_prescale_f32(float* uhat, float* rho, const float* v, const float* ls, int D) {
  prescale_row<float>(uhat, rho, v, ls, D);
}
extern "C" __global__ void value_prescale_bf16(float* uhat, float* rho, const __nv_bfloat16* v, const float* ls, int D) {
  prescale_row<__nv_bfloat16>(uhat, rho, v, ls, D);
}
extern "C" __global__ void value_prescale_f16(float* uhat, float* rho, const __half* v, const float* ls, int D) {
  prescale_row<__half>(uhat, rho, v, ls, D);
}
