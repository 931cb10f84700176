// Seeded random fill on the GPU, for making large random models without host copies. Element i draws from a
// counter-based generator: bits = splitmix64(seed + i·φ64), so the result depends only on (seed, i), not on the
// launch shape.
//   uniform: out[i] = low + (high − low)·u,           u ∈ [0, 1) from the top 24 bits
//   normal:  out[i] = mean + std·√(−2 ln u1)·cos(2π u2) (Box–Muller, u1 ∈ (0, 1], u2 ∈ [0, 1))
//
//   out: [n] f32 / bf16 (entries fill_uniform_<dtype>, fill_normal_<dtype>)
//   seed: 64-bit
//
// Launch: grid min(ceil(n / 256), 65535·16), block 256, grid-stride loop. f32 math.
// nvcc-flags: --use_fast_math
#include "common.cuh"

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float draw(unsigned long long seed, long long i, int normal) {
  const unsigned long long bits = splitmix64(seed + (unsigned long long)i * 0x9e3779b97f4a7c15ull);
  const float u1 = (float)((bits >> 40) + 1) * (1.f / 16777216.f);  // (0, 1]
  const float u2 = (float)((bits >> 16) & 0xffffff) * (1.f / 16777216.f);  // [0, 1)
  if (!normal) return u2;
  return sqrtf(-2.f * logf(u1)) * cosf(6.2831853071795865f * u2);
}

template <typename T>
__device__ __forceinline__ void fill(T* out, long long n, unsigned long long seed, float a, float b, int normal) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float r = draw(seed, i, normal);
    out[i] = from_f32<T>(normal ? a + b * r : a + (b - a) * r);
  }
}

// uniform: a = low, b = high; normal: a = mean, b = std
extern "C" __global__ void fill_uniform_f32(float* out, long long n, unsigned long long seed, float a, float b) {
  fill<float>(out, n, seed, a, b, 0);
}
extern "C" __global__ void fill_uniform_bf16(__nv_bfloat16* out, long long n, unsigned long long seed, float a, float b) {
  fill<__nv_bfloat16>(out, n, seed, a, b, 0);
}
extern "C" __global__ void fill_normal_f32(float* out, long long n, unsigned long long seed, float a, float b) {
  fill<float>(out, n, seed, a, b, 1);
}
extern "C" __global__ void fill_normal_bf16(__nv_bfloat16* out, long long n, unsigned long long seed, float a, float b) {
  fill<__nv_bfloat16>(out, n, seed, a, b, 1);
}
