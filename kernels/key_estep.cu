// E-step of the key-codebook EM (spec §3.4), soft and hard, with the structured distance: for a centre (A, B) of a
// stage with codewords z_i = X_i + i·Y_i (N_h = 64, P pairs),
//   ‖v − C_{A,B}‖² = α_A + β_B + Q[A,B],  α_A = ‖v‖² + |z_A|² − 2·Re⟨z_A, v⟩,  β_B = |z_B|² − 2·Im⟨z_B, v⟩,
// so a token costs 128 dot products of length D (not 4096) and 4096 additions; Q = tables[64..] is data-free.
//
//   V:      [N, D] f32, PI layout, rows divided by the token norm (one group)     n2: [N] f32, squared token norms
//   theta:  [128, P] f32 (θ[2i, j] = X_{i,j}, θ[2i+1, j] = Y_{i,j}), followed by tables: nz [64] = |z_i|², Q [64·64]
//   d2:     (soft, dense mode) [rows, 4096] f32 squared distances to explicit centres instead (the init step); null
//
// key_estep_soft_d{64,128}: P = softmax_c(−‖v − C_c‖/τ) per token, folded straight into per-block statistics
//   partial[block] += { w[4096] = Σ P,  S[128, D] = (Σ_B P)ᵀ·V (rows 0..63) and (Σ_A P)ᵀ·V (rows 64..127),
//                       hard = Σ n2·min_c ‖v − C_c‖² }   — the N×4096 matrix is never stored.
//   Pass 1: the minimum squared distance (3 instructions a cell). Pass 2: the cells within 88τ of the minimum
//   (the others weigh < e^−88, below f32's normal range) give the softmax denominator (exp and sqrt only for them)
//   and a bit mask of the rows A holding them. Pass 3 visits only those rows (at low τ a handful) and adds the
//   normalised weights: w by shared atomics, the row marginals Σ_B P by a warp reduction, the column marginals
//   Σ_A P kept per lane and added once per token.
// key_assign_d{64,128}: hard nearest centre (first index on ties, as torch.argmin), V ← V − C[code] in place,
//   codes[n] = code (if codes is not null), err[block] += Σ n2·‖V_n‖² after the update.
//
// Launch: grid (blocks), block 1024 (32 warps); each warp takes 2 tokens at a time (one shared read of Q and θ
// serves both). Lane l owns the cells (A, l) and (A, l + 32) for every A. Dynamic shared memory: softSharedBytes /
// assignSharedBytes in src/core/backend/cuda/ops/key-codebook.ts. f32 arithmetic; partial sums in f32 (shared-memory
// atomics: the order of additions, hence the last bits, can differ from run to run).
#include "common.cuh"

#define NH 64
#define KC 4096
#define TB 2  // the structured cell code below reads both tokens' α as one float2
#define WARPS 32
#define THREADS (WARPS * 32)
#define CUT 88.f
#define FULL 0xffffffffu
#define POS_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(FULL, v, o));
  return v;
}

// Shared memory of both kernels: θ as (X, Y) pairs [P][64], nz [64], Q [4096], then kernel-specific parts.
template <int D>
struct Tables {
  float2* xy;
  float* nz;
  float* q;
  __device__ float* end() { return q + KC; }
};

template <int D>
__device__ Tables<D> load_tables(unsigned char* smem, const float* __restrict__ theta, bool structured) {
  constexpr int P = D / 2;
  Tables<D> t;
  t.xy = reinterpret_cast<float2*>(smem);
  t.nz = reinterpret_cast<float*>(t.xy + P * NH);
  t.q = t.nz + NH;
  if (structured) {
    const float* tab = theta + 2 * NH * P;
    for (int e = threadIdx.x; e < P * NH; e += THREADS) {
      const int j = e / NH, i = e - j * NH;
      t.xy[e] = make_float2(theta[2 * i * P + j], theta[(2 * i + 1) * P + j]);
    }
    for (int e = threadIdx.x; e < NH; e += THREADS) t.nz[e] = tab[e];
    for (int e = threadIdx.x; e < KC; e += THREADS) t.q[e] = tab[NH + e];
  }
  return t;
}

// Loads TB tokens [base, base + TB) of V into registers (lane's channels lane + 32i) and the warp's buffer.
template <int D>
__device__ __forceinline__ void load_tokens(const float* __restrict__ V, const float* __restrict__ n2, int n0, int rows, int base,
                                            float (&v)[TB][D / 32], float (&nn)[TB], bool (&ok)[TB], float* vb, int lane) {
#pragma unroll
  for (int t = 0; t < TB; ++t) {
    const int n = base + t;
    ok[t] = n < rows;
    const float* row = V + (long long)(n0 + (ok[t] ? n : 0)) * D;
#pragma unroll
    for (int i = 0; i < D / 32; ++i) {
      v[t][i] = ok[t] ? row[lane + 32 * i] : 0.f;
      vb[t * D + lane + 32 * i] = v[t][i];
    }
    nn[t] = ok[t] ? n2[n0 + n] : 0.f;
  }
  __syncwarp();
}

// α (with ‖v‖² folded in) of codewords lane and lane+32 into the warp's buffer al[A][t]; β into registers.
template <int D>
__device__ __forceinline__ void token_terms(const Tables<D>& tb, const float (&v)[TB][D / 32], const float* vb, float* al,
                                            float (&bl)[TB], float (&bh)[TB], int lane) {
  constexpr int P = D / 2;
  float reL[TB], imL[TB], reH[TB], imH[TB];
#pragma unroll
  for (int t = 0; t < TB; ++t) reL[t] = imL[t] = reH[t] = imH[t] = 0.f;
#pragma unroll 4
  for (int j = 0; j < P; ++j) {
    const float2 xl = tb.xy[j * NH + lane];
    const float2 xh = tb.xy[j * NH + lane + 32];
#pragma unroll
    for (int t = 0; t < TB; ++t) {
      const float2 x = *reinterpret_cast<const float2*>(vb + t * D + 2 * j);
      reL[t] = fmaf(x.x, xl.x, fmaf(x.y, xl.y, reL[t]));
      imL[t] = fmaf(x.y, xl.x, fmaf(-x.x, xl.y, imL[t]));
      reH[t] = fmaf(x.x, xh.x, fmaf(x.y, xh.y, reH[t]));
      imH[t] = fmaf(x.y, xh.x, fmaf(-x.x, xh.y, imH[t]));
    }
  }
#pragma unroll
  for (int t = 0; t < TB; ++t) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < D / 32; ++i) s = fmaf(v[t][i], v[t][i], s);
    s = warp_sum(s);
    al[lane * TB + t] = s + tb.nz[lane] - 2.f * reL[t];
    al[(lane + 32) * TB + t] = s + tb.nz[lane + 32] - 2.f * reH[t];
    bl[t] = tb.nz[lane] - 2.f * imL[t];
    bh[t] = tb.nz[lane + 32] - 2.f * imH[t];
  }
  __syncwarp();
}

template <int D>
__device__ void estep_soft(const float* __restrict__ V, const float* __restrict__ n2, const float* __restrict__ theta,
                           const float* __restrict__ d2, int n0, int rows, float inv_tau, float* __restrict__ partial, int stride) {
  constexpr int DL = D / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  const bool dense = d2 != nullptr;
  Tables<D> tb = load_tables<D>(smem, theta, !dense);
  float* w = tb.end();                    // [4096]
  float* S = w + KC;                      // [128, D]
  float* vbuf = S + 2 * NH * D;           // [WARPS][TB][D]
  float* alph = vbuf + WARPS * TB * D;    // [WARPS][64][TB]
  float* hardw = alph + WARPS * NH * TB;  // [WARPS]
  for (int e = threadIdx.x; e < KC; e += THREADS) w[e] = 0.f;
  for (int e = threadIdx.x; e < 2 * NH * D; e += THREADS) S[e] = 0.f;
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* vb = vbuf + warp * TB * D;
  float* al = alph + warp * NH * TB;
  const float cutd = CUT / inv_tau;  // 88τ
  float hard = 0.f;
  for (int base = (blockIdx.x * WARPS + warp) * TB; base < rows; base += gridDim.x * WARPS * TB) {
    float v[TB][DL], nn[TB], bl[TB], bh[TB];
    bool ok[TB];
    load_tokens<D>(V, n2, n0, rows, base, v, nn, ok, vb, lane);
    if (!dense) token_terms<D>(tb, v, vb, al, bl, bh, lane);
    // cells (A, lane) and (A, lane + 32) of both tokens
    auto cells = [&](int A, float (&c)[TB][2]) {
      if (dense) {
#pragma unroll
        for (int t = 0; t < TB; ++t) {
          const float* row = d2 + (long long)(base + t) * KC + A * NH + lane;
          c[t][0] = ok[t] ? row[0] : POS_INF;
          c[t][1] = ok[t] ? row[32] : POS_INF;
        }
      } else {
        const float2 a = *reinterpret_cast<const float2*>(al + A * TB);
        const float q0 = tb.q[A * NH + lane], q1 = tb.q[A * NH + lane + 32];
        c[0][0] = a.x + bl[0] + q0;
        c[0][1] = a.x + bh[0] + q1;
        c[1][0] = a.y + bl[1] + q0;
        c[1][1] = a.y + bh[1] + q1;
      }
    };
    // pass 1: the minimum squared distance of each token
    float m2[TB];
#pragma unroll
    for (int t = 0; t < TB; ++t) m2[t] = POS_INF;
#pragma unroll 4
    for (int A = 0; A < NH; ++A) {
      float c[TB][2];
      cells(A, c);
#pragma unroll
      for (int t = 0; t < TB; ++t) m2[t] = fminf(m2[t], fminf(c[t][0], c[t][1]));
    }
    float M[TB], cutq[TB], z[TB];
    unsigned long long mask[TB];
#pragma unroll
    for (int t = 0; t < TB; ++t) {
      const float mq = fmaxf(warp_min(m2[t]), 0.f);
      M[t] = sqrtf(mq);
      cutq[t] = fmaxf((M[t] + cutd) * (M[t] + cutd), mq);  // the minimum itself always survives, however small τ
      z[t] = 0.f;
      mask[t] = 0ull;
      if (ok[t] && lane == 0) hard += nn[t] * mq;
    }
    // pass 2: cells within 88τ of the minimum (the rest weigh < e^−88): softmax denominator, rows that hold them
#pragma unroll 4
    for (int A = 0; A < NH; ++A) {
      float c[TB][2];
      cells(A, c);
#pragma unroll
      for (int t = 0; t < TB; ++t) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if (c[t][h] <= cutq[t]) {
            z[t] += __expf((M[t] - sqrtf(fmaxf(c[t][h], 0.f))) * inv_tau);
            mask[t] |= 1ull << A;
          }
        }
      }
    }
    // pass 3: over those rows only, the normalised weights into w, S (row marginals) and the column marginals
#pragma unroll
    for (int t = 0; t < TB; ++t) {
      const float invZ = 1.f / warp_sum(z[t]);
      unsigned long long rowsLeft = ((unsigned long long)__reduce_or_sync(FULL, (unsigned)(mask[t] >> 32)) << 32) |
                                    __reduce_or_sync(FULL, (unsigned)mask[t]);
      if (!ok[t]) rowsLeft = 0ull;
      float pb0 = 0.f, pb1 = 0.f;
      while (rowsLeft) {
        const int A = __ffsll((long long)rowsLeft) - 1;
        rowsLeft &= rowsLeft - 1;
        float c[TB][2];
        cells(A, c);
        float p[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          p[h] = c[t][h] <= cutq[t] ? __expf((M[t] - sqrtf(fmaxf(c[t][h], 0.f))) * inv_tau) * invZ : 0.f;
          if (p[h] != 0.f) atomicAdd(&w[A * NH + lane + 32 * h], p[h]);
        }
        pb0 += p[0];
        pb1 += p[1];
        const float pa = warp_sum(p[0] + p[1]);
        if (pa != 0.f) {
#pragma unroll
          for (int i = 0; i < DL; ++i) atomicAdd(&S[A * D + lane + 32 * i], pa * v[t][i]);
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float mine = h ? pb1 : pb0;
        unsigned lanes = __ballot_sync(FULL, mine != 0.f);
        while (lanes) {
          const int src = __ffs(lanes) - 1;
          lanes &= lanes - 1;
          const float pbv = __shfl_sync(FULL, mine, src);
#pragma unroll
          for (int i = 0; i < DL; ++i) atomicAdd(&S[(NH + src + 32 * h) * D + lane + 32 * i], pbv * v[t][i]);
        }
      }
    }
    __syncwarp();
  }
  if (lane == 0) hardw[warp] = hard;
  __syncthreads();
  float* out = partial + (long long)blockIdx.x * stride;
  for (int e = threadIdx.x; e < KC; e += THREADS) out[e] += w[e];
  for (int e = threadIdx.x; e < 2 * NH * D; e += THREADS) out[KC + e] += S[e];
  if (threadIdx.x == 0) {
    float h = 0.f;
    for (int i = 0; i < WARPS; ++i) h += hardw[i];
    out[KC + 2 * NH * D] += h;
  }
}

template <int D>
__device__ void assign(float* __restrict__ V, const float* __restrict__ n2, const float* __restrict__ theta, int rows,
                       int* __restrict__ codes, float* __restrict__ err) {
  constexpr int DL = D / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  Tables<D> tb = load_tables<D>(smem, theta, true);
  float* vbuf = tb.end();
  float* alph = vbuf + WARPS * TB * D;
  float* errw = alph + WARPS * NH * TB;
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* vb = vbuf + warp * TB * D;
  float* al = alph + warp * NH * TB;
  float acc = 0.f;
  for (int base = (blockIdx.x * WARPS + warp) * TB; base < rows; base += gridDim.x * WARPS * TB) {
    float v[TB][DL], nn[TB], bl[TB], bh[TB];
    bool ok[TB];
    load_tokens<D>(V, n2, 0, rows, base, v, nn, ok, vb, lane);
    token_terms<D>(tb, v, vb, al, bl, bh, lane);
    float best[TB];
    int arg[TB];
#pragma unroll
    for (int t = 0; t < TB; ++t) best[t] = POS_INF, arg[t] = 0;
#pragma unroll 4
    for (int A = 0; A < NH; ++A) {
      const float2 a2 = *reinterpret_cast<const float2*>(al + A * TB);
      const float q0 = tb.q[A * NH + lane], q1 = tb.q[A * NH + lane + 32];
#pragma unroll
      for (int t = 0; t < TB; ++t) {
        const float a = t ? a2.y : a2.x;
        const float c0 = a + bl[t] + q0;
        const float c1 = a + bh[t] + q1;
        if (c0 < best[t]) best[t] = c0, arg[t] = A * NH + lane;
        if (c1 < best[t]) best[t] = c1, arg[t] = A * NH + lane + 32;
      }
    }
#pragma unroll
    for (int t = 0; t < TB; ++t) {
      float b = best[t];
      int c = arg[t];
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(FULL, b, o);
        const int oc = __shfl_xor_sync(FULL, c, o);
        if (ob < b || (ob == b && oc < c)) b = ob, c = oc;
      }
      const int A = c / NH, B = c - A * NH;
      float s = 0.f;
#pragma unroll
      for (int i = 0; i < DL; ++i) {
        const int k = lane + 32 * i, j = k >> 1;
        const float2 za = tb.xy[j * NH + A], zb = tb.xy[j * NH + B];
        v[t][i] -= (k & 1) ? za.y + zb.x : za.x - zb.y;
        s = fmaf(v[t][i], v[t][i], s);
      }
      s = warp_sum(s);
      if (ok[t]) {
        float* row = V + (long long)(base + t) * D;
#pragma unroll
        for (int i = 0; i < DL; ++i) row[lane + 32 * i] = v[t][i];
        if (lane == 0) {
          acc += nn[t] * s;
          if (codes) codes[base + t] = c;
        }
      }
    }
    __syncwarp();
  }
  if (lane == 0) errw[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float h = 0.f;
    for (int i = 0; i < WARPS; ++i) h += errw[i];
    err[blockIdx.x] += h;
  }
}

extern "C" __global__ void __launch_bounds__(THREADS) key_estep_soft_d64(const float* V, const float* n2, const float* theta, const float* d2,
                                                                         int n0, int rows, float inv_tau, float* partial, int stride) {
  estep_soft<64>(V, n2, theta, d2, n0, rows, inv_tau, partial, stride);
}
extern "C" __global__ void __launch_bounds__(THREADS) key_estep_soft_d128(const float* V, const float* n2, const float* theta, const float* d2,
                                                                          int n0, int rows, float inv_tau, float* partial, int stride) {
  estep_soft<128>(V, n2, theta, d2, n0, rows, inv_tau, partial, stride);
}
extern "C" __global__ void __launch_bounds__(THREADS) key_assign_d64(float* V, const float* n2, const float* theta, int rows, int* codes, float* err) {
  assign<64>(V, n2, theta, rows, codes, err);
}
extern "C" __global__ void __launch_bounds__(THREADS) key_assign_d128(float* V, const float* n2, const float* theta, int rows, int* codes, float* err) {
  assign<128>(V, n2, theta, rows, codes, err);
}
