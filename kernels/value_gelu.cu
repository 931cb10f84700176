// value_gelu.cu — TrainOps.gelu and geluBackward, GELU with the exact erf (torch's default approximate='none'):
//   gelu:          y = x·Φ(x),                      Φ(x) = normcdf(x) = (1 + erf(x/√2))/2
//   gelu_backward: dx = dy·(Φ(x) + x·φ(x)),         φ(x) = e^{−x²/2}/√(2π)
//   x, dy, y, dx: [n] f32. Launch: grid-stride, block 256. f32 arithmetic (CUDA's normcdff: a few ulp).
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
