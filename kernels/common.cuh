// Helpers shared by the kernels: bf16 conversion, 16-byte vector loads, and block reductions.
// Kept free of the C++ standard library so that NVRTC compiles it without a host toolkit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// -infinity without <math.h>'s INFINITY macro (NVRTC has no host headers).
#define NEG_INF __int_as_float(0xff800000)

// bf16 <-> f32, round to nearest even (matches PyTorch's .to(torch.bfloat16) and the CPU backend).
__device__ __forceinline__ float bf2f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ __nv_bfloat16 f2bf(float x) { return __float2bfloat16_rn(x); }
// Rounds an f32 to bf16 precision and back: mirrors a PyTorch bf16 op whose result is stored in bf16.
__device__ __forceinline__ float round_bf16(float x) { return bf2f(f2bf(x)); }

// Eight bf16 values in one 16-byte load/store. Callers use it only where the address is 16-byte aligned: every
// tensor starts 256-byte aligned, so that holds for element offsets that are multiples of 8.
struct bf16x8 {
  __nv_bfloat16 v[8];
};
__device__ __forceinline__ bf16x8 load8(const __nv_bfloat16* p) {
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  return *reinterpret_cast<bf16x8*>(&raw);
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const bf16x8& x) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&x);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? partial[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? partial[lane] : NEG_INF;
  return warp_max(v);
}

// Float loads and stores for each storage dtype, so one templated kernel serves f32, bf16 and f16 tensors.
template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
