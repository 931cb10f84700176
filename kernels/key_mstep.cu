// M-step of the key-codebook EM (spec §3.4) from the E-step's statistics, and the per-stage tables the E-step reads.
//
// key_reduce: out[i] = Σ_b partial[b·stride + i] (i < stride), summed in f64. Launch: grid (ceil(stride/256)), block 256.
//
// key_solve_theta: θ minimising Σ_n Σ_c P[n,c]·‖V_n − C_c(θ)‖², i.e. θ = (TᵀWT)⁻¹TᵀW·M̃ in complex form:
//   H z_j = b_j for every pair j, H = diag(Σ_B w[i,B] + Σ_A w[A,i] + 2·64·1e-8) + i·(w − wᵀ)  (64×64 Hermitian),
//   b_{i,j} = (SA_i[2j] + SB_i[2j+1]) + i·(SA_i[2j+1] − SB_i[2j]).
//   stats: w [4096] then S [128, D] (SA rows 0..63, SB rows 64..127), f32      theta: [128, P] f32 out
//   Complex Cholesky H = L·Lᴴ in f64 in shared memory (rows padded to 65), then one thread per pair solves
//   L·y = b, Lᴴ·z = y. f64 because H is nearly singular along directions no used centre sees (the reference's
//   1e-8 regulariser); f32 would turn rounding there into large spurious θ. Launch: grid (1), block 256,
//   dynamic shared 2·64·65·8 + 2·64·P·8 bytes.
//
// key_stage_tables: the data-free tables after θ: nz[i] = |z_i|² [64], Q[A·64 + B] = 2·Σ_j (Y_A X_B − X_A Y_B) [4096],
//   written to tables = theta + 128·P. Launch: grid (16), block 256; f64 accumulation.
// key_layer_tables: the θ handles of a whole layer at once: for every unit u = r·G + g of theta [units, 128·P],
//   handles[u] = θ_u followed by its tables (stride 128·P + 64 + 4096). Launch: grid (16, units), block 256.
#include "common.cuh"

#define NH 64
#define KC 4096
#define LD 65

extern "C" __global__ void key_reduce(const float* __restrict__ partial, float* __restrict__ out, int blocks, int stride) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= stride) return;
  double s = 0.0;
  for (int b = 0; b < blocks; ++b) s += partial[(long long)b * stride + i];
  out[i] = (float)s;
}

extern "C" __global__ void key_solve_theta(const float* __restrict__ stats, float* __restrict__ theta, int D) {
  extern __shared__ double sm[];
  const int P = D / 2;
  double* hr = sm;               // [64][LD]
  double* hi = hr + NH * LD;     // [64][LD]
  double* br = hi + NH * LD;     // [64][P]
  double* bi = br + NH * P;      // [64][P]
  const float* w = stats;
  const float* S = stats + KC;
  const int tid = threadIdx.x;
  for (int e = tid; e < KC; e += blockDim.x) {
    const int i = e / NH, k = e - i * NH;
    hi[i * LD + k] = (double)w[i * NH + k] - (double)w[k * NH + i];
    hr[i * LD + k] = 0.0;
  }
  for (int e = tid; e < NH * P; e += blockDim.x) {
    const int i = e / P, j = e - i * P;
    br[e] = (double)S[i * D + 2 * j] + (double)S[(NH + i) * D + 2 * j + 1];
    bi[e] = (double)S[i * D + 2 * j + 1] - (double)S[(NH + i) * D + 2 * j];
  }
  __syncthreads();
  if (tid < NH) {
    double d = 0.0;
    for (int k = 0; k < NH; ++k) d += (double)w[tid * NH + k] + (double)w[k * NH + tid] + 2e-8;
    hr[tid * LD + tid] = d;
  }
  __syncthreads();
  // left-looking Cholesky: column k of L from the columns before it
  for (int k = 0; k < NH; ++k) {
    if (tid == 0) {
      double d = hr[k * LD + k];
      for (int m = 0; m < k; ++m) d -= hr[k * LD + m] * hr[k * LD + m] + hi[k * LD + m] * hi[k * LD + m];
      hr[k * LD + k] = sqrt(fmax(d, 1e-300));
    }
    __syncthreads();
    const int i = k + 1 + tid;
    if (i < NH) {
      double sr = hr[i * LD + k], si = hi[i * LD + k];
      for (int m = 0; m < k; ++m) {
        const double ar = hr[i * LD + m], ai = hi[i * LD + m], cr = hr[k * LD + m], ci = hi[k * LD + m];
        sr -= ar * cr + ai * ci;
        si -= ai * cr - ar * ci;
      }
      const double l = hr[k * LD + k];
      hr[i * LD + k] = sr / l;
      hi[i * LD + k] = si / l;
    }
    __syncthreads();
  }
  const int j = tid;
  if (j < P) {
    for (int i = 0; i < NH; ++i) {
      double re = br[i * P + j], im = bi[i * P + j];
      for (int m = 0; m < i; ++m) {
        const double ar = hr[i * LD + m], ai = hi[i * LD + m], yr = br[m * P + j], yi = bi[m * P + j];
        re -= ar * yr - ai * yi;
        im -= ar * yi + ai * yr;
      }
      const double l = hr[i * LD + i];
      br[i * P + j] = re / l;
      bi[i * P + j] = im / l;
    }
    for (int i = NH - 1; i >= 0; --i) {
      double re = br[i * P + j], im = bi[i * P + j];
      for (int m = i + 1; m < NH; ++m) {
        const double ar = hr[m * LD + i], ai = -hi[m * LD + i], yr = br[m * P + j], yi = bi[m * P + j];
        re -= ar * yr - ai * yi;
        im -= ar * yi + ai * yr;
      }
      const double l = hr[i * LD + i];
      br[i * P + j] = re / l;
      bi[i * P + j] = im / l;
      theta[2 * i * P + j] = (float)(re / l);
      theta[(2 * i + 1) * P + j] = (float)(im / l);
    }
  }
}

// nz and Q of one stage's θ [128, P] into tables [64 + 4096], cell e = A·64 + B of this thread
__device__ void stage_tables(const float* __restrict__ theta, float* __restrict__ tables, int P, int e) {
  const int A = e / NH, B = e - A * NH;
  const float* xA = theta + 2 * A * P;
  const float* yA = xA + P;
  const float* xB = theta + 2 * B * P;
  const float* yB = xB + P;
  double s = 0.0;
  for (int j = 0; j < P; ++j) s += (double)yA[j] * xB[j] - (double)xA[j] * yB[j];
  tables[NH + e] = (float)(2.0 * s);
  if (e < NH) {
    const float* x = theta + 2 * e * P;
    double n = 0.0;
    for (int j = 0; j < P; ++j) n += (double)x[j] * x[j] + (double)x[P + j] * x[P + j];
    tables[e] = (float)n;
  }
}

extern "C" __global__ void key_stage_tables(float* __restrict__ theta, int P) {
  stage_tables(theta, theta + 2 * NH * P, P, blockIdx.x * blockDim.x + threadIdx.x);
}

extern "C" __global__ void key_layer_tables(const float* __restrict__ theta, float* __restrict__ handles, int P) {
  const float* src = theta + (long long)blockIdx.y * 2 * NH * P;
  float* dst = handles + (long long)blockIdx.y * (2 * NH * P + NH + KC);
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  for (int i = e; i < 2 * NH * P; i += gridDim.x * blockDim.x) dst[i] = src[i];
  stage_tables(src, dst + 2 * NH * P, P, e);
}
