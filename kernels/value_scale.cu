// value_scale.cu — TrainOps.scaleInPlace: x ← s·x over n elements, f32.
// Launch: grid-stride, block 256.
extern "C" __global__ void value_scale_f32(float* x, long long n, float s) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    x[i] *= s;
}
