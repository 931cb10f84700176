// value_layer_norm.cu — TrainOps.layerNorm and layerNormParamGrad (LayerNorm over rows, biased variance):
//   forward:     μ = mean(x),  var = mean((x − μ)²),  x̂ = (x − μ)·rsqrt(var + eps),  y = γ ⊙ x̂ + β
//   param grads: dγ [C] += Σ_rows dy ⊙ x̂,  dβ [C] += Σ_rows dy   (the input is data: no dx)
//
// value_layer_norm_f32: x [R, C] f32, γ, β [C] f32 → y, x̂ [R, C] f32. Grid (R), block 256; two passes over the row
//   (mean, then centred variance) with block reductions. f32 arithmetic.
// value_layer_norm_grad_partial: partial [S, 2C] f32 = per row slice s (rows [s·rowsPer, (s+1)·rowsPer)) the sums of
//   dy ⊙ x̂ (columns 0..C−1) and dy (C..2C−1). Grid (ceil(C/32), S), block (32, 8).
// value_layer_norm_grad_finish: dγ[c] += Σ_s partial[s, c], dβ[c] += Σ_s partial[s, C + c] (s ascending, f64).
//   Grid-stride over c, block 256. Two passes so the result does not depend on scheduling (deterministic).
#include "common.cuh"

constexpr int kColumns = 32;  // columns per grad-partial block (threadIdx.x)
constexpr int kRowLanes = 8;  // row lanes per column (threadIdx.y)

extern "C" __global__ void value_layer_norm_f32(float* y, float* xhat, const float* x, const float* gamma,
                                                const float* beta, int C, float eps) {
  const size_t base = (size_t)blockIdx.x * C;
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[base + c];
  const float mean = block_sum(s) / C;
  float q = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = x[base + c] - mean;
    q += d * d;
  }
  const float rstd = 1.f / sqrtf(block_sum(q) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float h = (x[base + c] - mean) * rstd;
    xhat[base + c] = h;
    y[base + c] = gamma[c] * h + beta[c];
  }
}

extern "C" __global__ void value_layer_norm_grad_partial(float* partial, const float* dy, const float* xhat, int R,
                                                         int C, int rowsPer) {
  __shared__ float red[2][kRowLanes][kColumns + 1];
  const int c = blockIdx.x * kColumns + threadIdx.x;
  const int r0 = blockIdx.y * rowsPer;
  const int r1 = min(R, r0 + rowsPer);
  float sg = 0.f, sb = 0.f;
  if (c < C)
    for (int r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const float d = dy[(size_t)r * C + c];
      sg += d * xhat[(size_t)r * C + c];
      sb += d;
    }
  red[0][threadIdx.y][threadIdx.x] = sg;
  red[1][threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float tg = 0.f, tb = 0.f;
#pragma unroll
    for (int i = 0; i < kRowLanes; ++i) {
      tg += red[0][i][threadIdx.x];
      tb += red[1][i][threadIdx.x];
    }
    partial[(size_t)blockIdx.y * 2 * C + c] = tg;
    partial[(size_t)blockIdx.y * 2 * C + C + c] = tb;
  }
}

extern "C" __global__ void value_layer_norm_grad_finish(float* dgamma, float* dbeta, const float* partial, int S, int C) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    double tg = 0.0, tb = 0.0;
    for (int s = 0; s < S; ++s) {
      tg += partial[(size_t)s * 2 * C + c];
      tb += partial[(size_t)s * 2 * C + C + c];
    }
    dgamma[c] = (float)((double)dgamma[c] + tg);
    dbeta[c] = (float)((double)dbeta[c] + tb);
  }
}
