// value_gelu.cu — TrainOps.gelu and geluBackward, GELU with the exact erf (torch's default approximate='none'):
//   gelu:          y = x·Φ(x),                      Φ(x) = normcdf(x) = (1 + erf(x/√2))/2
//   gelu_backward: dx = dy·(Φ(x) + x·φ(x)),         φ(x) = e^{−x²/2}/√(2π)
//   x, dy, y, dx: [n] f32. Launch: grid-stride, block 256. f32 arithmetic (CUDA's normcdff: a few ulp).
//   bias_gelu_bf16 (the argmax encoder at inference): y [R, C] bf16 = gelu(x + b), x [R, C] f32 (the first GEMM's
//   output), b [C] f32: the bias add and GELU of the training path in one pass, rounded once to bf16 for the second
//   GEMM. Grid-stride over R·C/4 float4 groups (C a multiple of 4), block 256.
#include "common.cuh"
extern "C" __global__ void value_gelu_f32(float* y, const float* x, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float v = x[i];
    y[i] = v * normcdff(v);
  }
}

extern "C" __global__ void value_gelu_backward_f32(float* dx, const float* dy, const float* x, long long n) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float v = x[i];
    dx[i] = dy[i] * (normcdff(v) + v * inv_sqrt_2pi * expf(-0.5f * v * v));
  }
}

extern "C" __global__ void value_bias_gelu_bf16(__nv_bfloat16* y, const float* x, const float* bias, long long n, int C) {
  const long long quads = n / 4;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += (long long)gridDim.x * blockDim.x) {
    const float4 a = reinterpret_cast<const float4*>(x)[i];
    const int c = (int)((4 * i) % C);
    const float h[4] = {a.x + bias[c], a.y + bias[c + 1], a.z + bias[c + 2], a.w + bias[c + 3]};
    __nv_bfloat16 out[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) out[j] = f2bf(h[j] * normcdff(h[j]));
    *reinterpret_cast<uint2*>(y + 4 * i) = *reinterpret_cast<const uint2*>(out);
  }
}
