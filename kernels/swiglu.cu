// SwiGLU gate of the MLP (HF LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x))):
//   out[i] = bf16( bf16(silu(gate[i])) · up[i] ),   silu(g) = g / (1 + e^−g) in f32
// The silu result is rounded to bf16 before the product, as the two separate bf16 ops of PyTorch do.
//
//   gate, up, out: [n] bf16 (any shape, contiguous; out may alias either input)
//
// Launch: grid ceil(n / (256·8)), block 256; 8 elements per thread with 16-byte loads, scalar tail. f32 math.
// nvcc-flags: --use_fast_math
#include "common.cuh"

constexpr int kPerThread = 8;  // elements per thread: one 16-byte load of bf16x8

__device__ __forceinline__ float swiglu1(float g, float u) { return round_bf16(round_bf16(g / (1.f + __expf(-g))) * u); }

extern "C" __global__ void swiglu_bf16(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up,
                                       long long n) {
  const long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * kPerThread;
  if (i + kPerThread <= n) {
    bf16x8 g = load8(gate + i), u = load8(up + i), o;
#pragma unroll
    for (int j = 0; j < 8; j++) o.v[j] = f2bf(swiglu1(bf2f(g.v[j]), bf2f(u.v[j])));
    store8(out + i, o);
  } else {
    for (long long k = i; k < n; k++) out[k] = f2bf(swiglu1(bf2f(gate[k]), bf2f(up[k])));
  }
}
