// Casts between the float storage dtypes: out[i] = D(f32(in[i])), round to nearest even (NaN stays NaN, f16
// overflow becomes ±inf), matching the CPU backend's conversions. One entry point per (source, destination) pair:
// cast_<src>_to_<dst> with src, dst ∈ {f32, bf16, f16}.
//
//   in:  [n] src dtype, contiguous
//   out: [n] dst dtype, contiguous
//
// Launch: grid min(ceil(n / 256), 65535·16), block 256, grid-stride loop. No accumulation.
#include "common.cuh"

template <typename S, typename D>
__device__ __forceinline__ void cast_n(D* __restrict__ out, const S* __restrict__ in, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = from_f32<D>(to_f32<S>(in[i]));
}

#define CAST(NAME, S, D) \
  extern "C" __global__ void NAME(D* out, const S* in, long long n) { cast_n<S, D>(out, in, n); }

CAST(cast_f32_to_bf16, float, __nv_bfloat16)
CAST(cast_bf16_to_f32, __nv_bfloat16, float)
CAST(cast_f32_to_f16, float, __half)
CAST(cast_f16_to_f32, __half, float)
CAST(cast_bf16_to_f16, __nv_bfloat16, __half)
CAST(cast_f16_to_bf16, __half, __nv_bfloat16)
