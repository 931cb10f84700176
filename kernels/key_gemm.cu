// Squared distances from tokens to explicit centres, for the EM init step (spec §3.4: the initial centres are N_h²
// data rows, so the structured distance does not apply). An f32 GEMM with a distance epilogue:
//
//   d2[t, c] = vn[n0 + t] + vn[idx[c]] − 2·Σ_k V[n0 + t, k]·V[idx[c], k]     (the cdist expansion, as torch uses)
//
//   V:   [N, D] f32 (PI layout; D a multiple of 16)     idx: [K] i32 centre rows (K a multiple of 128)
//   vn:  [N] f32, ‖V_n‖² (key_sqnorm_rows)              d2:  [rows, K] f32 out, rows = tokens of this chunk
//
// Launch: grid (K/128, ceil(rows/128)), block 256, two blocks per SM; a 128×128 output tile per block, the
// K-dimension in steps of 8 through double-buffered shared memory (transposed, padded; the next step's loads are in
// flight while this one is computed), an 8×8 register tile per thread split in 4-wide halves 64 apart so that
// shared reads are conflict-free float4s. f32 accumulation.
//
// key_sqnorm_rows: vn[n] = Σ_k V[n, k]², one warp per row; grid (ceil(N/8)), block 256.
#include "common.cuh"

#define SQNORM_ROWS 8  // rows per block of key_sqnorm_rows: one warp each

extern "C" __global__ void key_sqnorm_rows(const float* __restrict__ V, float* __restrict__ vn, int N, int D) {
  const int n = blockIdx.x * SQNORM_ROWS + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  float s = 0.f;
  for (int k = lane; k < D; k += 32) {
    const float a = V[(long long)n * D + k];
    s += a * a;
  }
  s = warp_sum(s);
  if (lane == 0) vn[n] = s;
}

#define BM 128
#define BN 128
#define BK 8
#define PAD 4
#define GEMM_THREADS 256  // the loaders and the 8×8 register tiles are laid out for 256 threads

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) key_dist_gemm(const float* __restrict__ V, const int* __restrict__ idx,
                                                                   const float* __restrict__ vn, float* __restrict__ d2,
                                                                   int n0, int rows, int K, int D) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  const int rowBase = blockIdx.y * BM;  // token tile (relative to n0)
  const int colBase = blockIdx.x * BN;  // centre tile
  // loader: each thread moves one float4 of A and one of B per k-step: row tid >> 1, k offset (tid & 1)·4
  const int lr = tid >> 1, lk = (tid & 1) * 4;
  const bool aOk = rowBase + lr < rows;
  const float* aRow = V + (long long)(n0 + (aOk ? rowBase + lr : 0)) * D + lk;
  const float* bRow = V + (long long)idx[colBase + lr] * D + lk;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  float4 a = aOk ? *reinterpret_cast<const float4*>(aRow) : zero;
  float4 b = *reinterpret_cast<const float4*>(bRow);
  int cur = 0;
  As[0][lk + 0][lr] = a.x; As[0][lk + 1][lr] = a.y; As[0][lk + 2][lr] = a.z; As[0][lk + 3][lr] = a.w;
  Bs[0][lk + 0][lr] = b.x; Bs[0][lk + 1][lr] = b.y; Bs[0][lk + 2][lr] = b.z; Bs[0][lk + 3][lr] = b.w;
  __syncthreads();
  for (int k0 = 0; k0 < D; k0 += BK) {
    const bool more = k0 + BK < D;
    if (more) {  // prefetch the next k-step into registers while this one is computed
      a = aOk ? *reinterpret_cast<const float4*>(aRow + k0 + BK) : zero;
      b = *reinterpret_cast<const float4*>(bRow + k0 + BK);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + tx * 4]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (more) {
      const int nxt = cur ^ 1;
      As[nxt][lk + 0][lr] = a.x; As[nxt][lk + 1][lr] = a.y; As[nxt][lk + 2][lr] = a.z; As[nxt][lk + 3][lr] = a.w;
      Bs[nxt][lk + 0][lr] = b.x; Bs[nxt][lk + 1][lr] = b.y; Bs[nxt][lk + 2][lr] = b.z; Bs[nxt][lk + 3][lr] = b.w;
      __syncthreads();
      cur = nxt;
    }
  }
  float cn[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) cn[j] = vn[idx[colBase + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4)]];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int r = rowBase + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (r >= rows) continue;
    const float rn = vn[n0 + r];
    float* out = d2 + (long long)r * K + colBase;
    float4 o0, o1;
    o0.x = rn + cn[0] - 2.f * acc[i][0]; o0.y = rn + cn[1] - 2.f * acc[i][1];
    o0.z = rn + cn[2] - 2.f * acc[i][2]; o0.w = rn + cn[3] - 2.f * acc[i][3];
    o1.x = rn + cn[4] - 2.f * acc[i][4]; o1.y = rn + cn[5] - 2.f * acc[i][5];
    o1.z = rn + cn[6] - 2.f * acc[i][6]; o1.w = rn + cn[7] - 2.f * acc[i][7];
    *reinterpret_cast<float4*>(out + tx * 4) = o0;
    *reinterpret_cast<float4*>(out + 64 + tx * 4) = o1;
  }
}
