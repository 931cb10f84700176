// value_sum_rows.cu — TrainOps.sumRowsInto (bias gradients): into [C] += Σ_r x[r, C], deterministic.
//
// Two passes so the order of additions never depends on scheduling (a resumed run repeats bit for bit):
//   value_sum_rows_partial: partial[s, c] = Σ x[r, c] over row slice s = rows [s·rowsPer, (s+1)·rowsPer)
//     grid (ceil(C/32), S), block (32, 8): 8 row lanes per column, summed in shared memory in a fixed order.
//   value_sum_rows_finish: into[c] += Σ_s partial[s, c] (s ascending, f64), grid-stride over c, block 256.
//   x: [R, C] f32, row-major   partial: [S, C] f32 scratch   into: [C] f32
// Accumulation: f32 within a slice, f64 across slices.
#include "common.cuh"

constexpr int kColumns = 32;  // columns per partial block (threadIdx.x)
constexpr int kRowLanes = 8;  // row lanes per column (threadIdx.y)

extern "C" __global__ void value_sum_rows_partial(float* partial, const float* x, int R, int C, int rowsPer) {
  __shared__ float red[kRowLanes][kColumns + 1];
  const int c = blockIdx.x * kColumns + threadIdx.x;
  const int r0 = blockIdx.y * rowsPer;
  const int r1 = min(R, r0 + rowsPer);
  float s = 0.f;
  if (c < C)
    for (int r = r0 + threadIdx.y; r < r1; r += kRowLanes) s += x[(size_t)r * C + c];
  red[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < kRowLanes; ++i) t += red[i][threadIdx.x];
    partial[(size_t)blockIdx.y * C + c] = t;
  }
}

extern "C" __global__ void value_sum_rows_finish(float* into, const float* partial, int S, int C) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    double t = 0.0;
    for (int s = 0; s < S; ++s) t += partial[(size_t)s * C + c];
    into[c] = (float)((double)into[c] + t);
  }
}
