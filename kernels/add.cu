// Elementwise (residual) add: out[i] = bf16(f32(a[i]) + f32(b[i])).
//
//   a, b, out: [n] bf16 (any shape, contiguous, same shape; out may alias a or b)
//
// Launch: grid ceil(n / (256·8)), block 256; 8 elements per thread with 16-byte loads, scalar tail. f32 math.
#include "common.cuh"

constexpr int kPerThread = 8;  // elements per thread: one 16-byte load of bf16x8

extern "C" __global__ void add_bf16(__nv_bfloat16* out, const __nv_bfloat16* a, const __nv_bfloat16* b, long long n) {
  const long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * kPerThread;
  if (i + kPerThread <= n) {
    bf16x8 x = load8(a + i), y = load8(b + i), o;
#pragma unroll
    for (int j = 0; j < 8; j++) o.v[j] = f2bf(bf2f(x.v[j]) + bf2f(y.v[j]));
    store8(out + i, o);
  } else {
    for (long long k = i; k < n; k++) out[k] = f2bf(bf2f(a[k]) + bf2f(b[k]));
  }
}
