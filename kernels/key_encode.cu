// The key encoder of the CommVQ cache (spec §6.4) after key_prepare: every stage of every group of a chunk of tokens
// in one launch. Per token and group, R stages of: the structured nearest centre, then the residual update.
//
//   V:      [G, N, D] f32, PI layout, rows divided by the token norm (key_prepare's output; read, not written)
//   n2:     [N] f32, squared token norms (weights of the error sums)
//   tables: [R, G, stride] f32, the θ handles of DeviceKeyTables: θ [128, P] (θ[2i, j] = X_{i,j}, θ[2i+1, j] = Y_{i,j}),
//           nz [64] = |z_i|², Q [64·64] = 2·Σ_j (Y_A X_B − X_A Y_B)       (stride = 128·P + 64 + 4096)
//   codes:  [R, G, codeStride] i32 from column 0 of this chunk: codes[(r·G + g)·codeStride + n] = A·64 + B
//   err:    [R, G, errStride] f32 or null: err[(r·G + g)·errStride + block] += Σ n2·‖v after stage r‖² of the block
//
// The distances. Write the centres through W [D, 128]: column A is z_A as (X_{A,j}, Y_{A,j}) pairs and column 64 + B
// is i·z_B as (−Y_{B,j}, X_{B,j}) pairs, so that C_{A,B} = W[:, A] + W[:, 64 + B] and
//   ‖v − C_{A,B}‖² = α_A + β_B + Q[A,B],  α_A = ‖v‖² + |z_A|² − 2(v·W)_A,  β_B = |z_B|² − 2(v·W)_{64+B}.
// One product [16 tokens, D]·[D, 128] per warp and stage gives every α and β; it runs on tensor cores as 3×TF32
// (hi·hi + hi·lo + lo·hi with x = hi + lo, both rounded to TF32): each product keeps ~2^-21 relative accuracy, so the
// distances are as good as f32 dot products (the near-tie bound of test/gpu/commvq-cache-kernels.test.ts). W is read
// from θ in shared memory (W[k, A] = θ[2A + k%2, k/2], W[k, 64+B] = ±θ[2B + 1 − k%2, k/2]): no second copy.
//
// The search, 4096 cells a token: for each column B the minimum over A of α_A + Q[A, B] (one add and one min a
// cell), plus β_B; the best column by a warp reduction (lowest B on exact ties); then the lowest A that reaches that
// column's minimum (recomputed with the same add, so equality is exact). On an exact tie between cells of different
// columns this may pick another cell than torch.argmin's first flat index; the f64 reference ranks them apart anyway.
//
// Launch: grid (⌈N / (warps·16)⌉, G), block warps·32 with warps ≤ MAX_WARPS (the launcher takes fewer for short
// chunks, so that more SMs get a block). Each warp owns 16 tokens for all R stages: their residual stays in registers,
// laid out as the A operand of mma.m16n8k8 (lane: rows lane/4 and lane/4 + 8, columns 8s + lane%4 and 8s + lane%4 + 4).
// The tables of stage r + 1 arrive by cp.async while stage r runs (two buffers). Dynamic shared memory:
// encodeSharedBytes in src/core/backend/cuda/ops/key-codebook.ts.
#include "common.cuh"
#include "tensor_core.cuh"

#define NH 64
#define KC 4096
#define MAX_WARPS 8
#define WARP_TOKENS 16  // one m16 tile of tokens per warp
#define RMAX 32         // stages one launch may run (the per-warp error slots)
#define THETA_PAD 2     // θ row stride P + 2: the B-fragment reads of a warp fall in 32 distinct banks
#define ALD 20          // α [A][token] row stride: float4 reads of 4 tokens
#define BLD 72          // β [token][B] row stride
#define FULL 0xffffffffu
#define POS_INF __int_as_float(0x7f800000)

namespace {

// 8-byte global → shared copy (θ rows in shared memory are 8-byte aligned, not 16)
__device__ __forceinline__ void cp_async_8(u32 dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src) : "memory");
}

// Stage tables in shared memory: θ [128][P + THETA_PAD], then nz [64] and Q [64·64] as the handle holds them.
template <int D>
struct StageTables {
  static constexpr int P = D / 2, LDT = P + THETA_PAD;
  static constexpr int FLOATS = 2 * NH * LDT + NH + KC;  // a multiple of 4: the tail stays 16-byte aligned
  const float* th;
  const float* nz;
  const float* q;
  __device__ explicit StageTables(const float* base) : th(base), nz(base + 2 * NH * LDT), q(base + 2 * NH * LDT + NH) {}

  // Enqueues the copy of one handle (θ, nz, Q) into `base` by the whole block (cp.async; the caller commits and waits).
  static __device__ void fetch(float* base, const float* __restrict__ handle) {
    for (int e = 2 * threadIdx.x; e < 2 * NH * P; e += 2 * blockDim.x) cp_async_8(smem_addr(base + (e / P) * LDT + e % P), handle + e);
    for (int e = 4 * threadIdx.x; e < NH + KC; e += 4 * blockDim.x) cp_async_16(smem_addr(base + 2 * NH * LDT + e), handle + 2 * NH * P + e);
  }
};

__device__ __forceinline__ u32 tf32_rna(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// x ≈ hi + lo, both TF32 (hi rounded to 10 mantissa bits, lo the remainder rounded likewise)
__device__ __forceinline__ void split_tf32(float x, u32& hi, u32& lo) {
  hi = tf32_rna(x);
  lo = tf32_rna(x - __uint_as_float(hi));
}

// c += a·b for one m16n8k8 tile: a 16×8 TF32 (row), b 8×8 TF32 (col), c 16×8 f32
__device__ __forceinline__ void mma_tf32(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Σ over the 4 lanes of a fragment row group (lanes 4q .. 4q + 3)
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(FULL, x, 1);
  return x + __shfl_xor_sync(FULL, x, 2);
}

template <int D>
__device__ void encode(const float* __restrict__ V, const float* __restrict__ n2, const float* __restrict__ tables, int N, int R,
                       int* __restrict__ codes, int codeStride, float* __restrict__ err, int errStride) {
  using Tables = StageTables<D>;
  constexpr int P = D / 2, LDT = Tables::LDT, KS = D / 8;
  constexpr int stride = 2 * NH * P + NH + KC;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warps = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* buffers = reinterpret_cast<float*>(smem);                 // two StageTables, stage r in buffer r % 2
  float* al = buffers + 2 * Tables::FLOATS + warp * (NH * ALD + WARP_TOKENS * BLD);  // this warp's α [64][ALD]
  float* be = al + NH * ALD;                                         // this warp's β [16][BLD]
  float* errw = buffers + 2 * Tables::FLOATS + warps * (NH * ALD + WARP_TOKENS * BLD);  // [warps][RMAX]
  int* best = reinterpret_cast<int*>(errw + warps * RMAX) + warp * WARP_TOKENS;       // this warp's codes [16]

  const int G = gridDim.y, g = blockIdx.y;
  const int gq = lane >> 2, tq = lane & 3;  // fragment row group and column of this lane
  const int par = tq & 1, jq = tq >> 1;     // every channel k this lane holds has k % 2 = par and k / 2 = 4s + jq (+2)
  const int t0 = (blockIdx.x * warps + warp) * WARP_TOKENS;
  const int rowA = t0 + gq, rowB = rowA + 8;  // the lane's two tokens
  const bool okA = rowA < N, okB = rowB < N;

  Tables::fetch(buffers, tables + (long long)g * stride);  // stage 0
  cp_async_commit();

  // v[s]: (rowA, 8s + tq), (rowB, 8s + tq), (rowA, 8s + tq + 4), (rowB, 8s + tq + 4): the A fragment of k-step s
  float v[KS][4];
  const float* Vg = V + (long long)g * N * D;
#pragma unroll
  for (int s = 0; s < KS; ++s) {
    const int k = 8 * s + tq;
    v[s][0] = okA ? Vg[(long long)rowA * D + k] : 0.f;
    v[s][1] = okB ? Vg[(long long)rowB * D + k] : 0.f;
    v[s][2] = okA ? Vg[(long long)rowA * D + k + 4] : 0.f;
    v[s][3] = okB ? Vg[(long long)rowB * D + k + 4] : 0.f;
  }
  const float nA = okA ? n2[rowA] : 0.f, nB = okB ? n2[rowB] : 0.f;

  for (int r = 0; r < R; ++r) {
    __syncthreads();  // buffer (r + 1) % 2 held stage r − 1: every warp is done with it
    if (r + 1 < R) Tables::fetch(buffers + ((r + 1) & 1) * Tables::FLOATS, tables + (long long)((r + 1) * G + g) * stride);
    cp_async_commit();  // (an empty group on the last stage keeps the count uniform)
    cp_async_wait<1>();  // stage r's copies have landed (this thread's)
    __syncthreads();     // ... and every thread's
    const Tables tb(buffers + (r & 1) * Tables::FLOATS);
    const float* th = tb.th;
    const float* nz = tb.nz;
    const float* Q = tb.q;

    // acc[nt] = (v·W) of the 16 tokens for columns 8nt .. 8nt + 7 (nt < 8: α's dot products, nt ≥ 8: β's)
    float acc[16][4];
#pragma unroll
    for (int nt = 0; nt < 16; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
    for (int s = 0; s < KS; ++s) {
      u32 ah[4], alo[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) split_tf32(v[s][i], ah[i], alo[i]);
      const int j = 4 * s + jq;
#pragma unroll
      for (int nt = 0; nt < 16; ++nt) {
        // W[k, n] for k = 8s + tq (+4), n = 8nt + gq
        const int i = 8 * (nt & 7) + gq;
        const float* row = th + (nt < 8 ? 2 * i + par : 2 * i + 1 - par) * LDT;
        const float sign = nt < 8 || par ? 1.f : -1.f;
        u32 bh0, bl0, bh1, bl1;
        split_tf32(sign * row[j], bh0, bl0);
        split_tf32(sign * row[j + 2], bh1, bl1);
        mma_tf32(acc[nt], alo, bh0, bh1);
        mma_tf32(acc[nt], ah, bl0, bl1);
        mma_tf32(acc[nt], ah, bh0, bh1);
      }
    }
    float sA = 0.f, sB = 0.f;  // ‖v‖² of the lane's two tokens
#pragma unroll
    for (int s = 0; s < KS; ++s) {
      sA = fmaf(v[s][0], v[s][0], fmaf(v[s][2], v[s][2], sA));
      sB = fmaf(v[s][1], v[s][1], fmaf(v[s][3], v[s][3], sB));
    }
    sA = quad_sum(sA);
    sB = quad_sum(sB);
#pragma unroll
    for (int nt = 0; nt < 16; ++nt) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = 8 * (nt & 7) + 2 * tq + c;
        if (nt < 8) {
          al[col * ALD + gq] = sA + nz[col] - 2.f * acc[nt][c];
          al[col * ALD + gq + 8] = sB + nz[col] - 2.f * acc[nt][2 + c];
        } else {
          be[gq * BLD + col] = nz[col] - 2.f * acc[nt][c];
          be[(gq + 8) * BLD + col] = nz[col] - 2.f * acc[nt][2 + c];
        }
      }
    }
    __syncwarp();

    // the nearest centre of each token, 4 tokens at a time; lane owns columns B = lane and lane + 32
    for (int t4 = 0; t4 < WARP_TOKENS; t4 += 4) {
      float m[4][2];
#pragma unroll
      for (int u = 0; u < 4; ++u) m[u][0] = m[u][1] = POS_INF;
#pragma unroll 8
      for (int A = 0; A < NH; ++A) {
        const float4 a = *reinterpret_cast<const float4*>(al + A * ALD + t4);
        const float q0 = Q[A * NH + lane], q1 = Q[A * NH + lane + 32];
        m[0][0] = fminf(m[0][0], a.x + q0);
        m[0][1] = fminf(m[0][1], a.x + q1);
        m[1][0] = fminf(m[1][0], a.y + q0);
        m[1][1] = fminf(m[1][1], a.y + q1);
        m[2][0] = fminf(m[2][0], a.z + q0);
        m[2][1] = fminf(m[2][1], a.z + q1);
        m[3][0] = fminf(m[3][0], a.w + q0);
        m[3][1] = fminf(m[3][1], a.w + q1);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int t = t4 + u;
        float d = m[u][0] + be[t * BLD + lane];
        int B = lane;
        const float d1 = m[u][1] + be[t * BLD + lane + 32];
        if (d1 < d) d = d1, B = lane + 32;
        for (int o = 16; o > 0; o >>= 1) {
          const float od = __shfl_xor_sync(FULL, d, o);
          const int oB = __shfl_xor_sync(FULL, B, o);
          if (od < d || (od == d && oB < B)) d = od, B = oB;
        }
        const float colMin = __shfl_sync(FULL, B < 32 ? m[u][0] : m[u][1], B & 31);
        const u32 lo = __ballot_sync(FULL, al[lane * ALD + t] + Q[lane * NH + B] == colMin);
        const u32 hi = __ballot_sync(FULL, al[(lane + 32) * ALD + t] + Q[(lane + 32) * NH + B] == colMin);
        const int A = lo ? __ffs(lo) - 1 : hi ? 31 + __ffs(hi) : 0;
        if (lane == 0) best[t] = A * NH + B;
      }
    }
    __syncwarp();

    // v ← v − C[code]: C[2j + p] = θ[2A + p, j] ± θ[2B + 1 − p, j] (− for p = 0, + for p = 1)
    const int cA = best[gq], cB = best[gq + 8];
    const float* xA = th + (2 * (cA >> 6) + par) * LDT;
    const float* yA = th + (2 * (cA & 63) + 1 - par) * LDT;
    const float* xB = th + (2 * (cB >> 6) + par) * LDT;
    const float* yB = th + (2 * (cB & 63) + 1 - par) * LDT;
    float eA = 0.f, eB = 0.f;
#pragma unroll
    for (int s = 0; s < KS; ++s) {
      const int j = 4 * s + jq;
      v[s][0] -= par ? xA[j] + yA[j] : xA[j] - yA[j];
      v[s][2] -= par ? xA[j + 2] + yA[j + 2] : xA[j + 2] - yA[j + 2];
      v[s][1] -= par ? xB[j] + yB[j] : xB[j] - yB[j];
      v[s][3] -= par ? xB[j + 2] + yB[j + 2] : xB[j + 2] - yB[j + 2];
      eA = fmaf(v[s][0], v[s][0], fmaf(v[s][2], v[s][2], eA));
      eB = fmaf(v[s][1], v[s][1], fmaf(v[s][3], v[s][3], eB));
    }
    eA = quad_sum(eA);
    eB = quad_sum(eB);
    if (tq == 0) {
      int* out = codes + (long long)(r * G + g) * codeStride;
      if (okA) out[rowA] = cA;
      if (okB) out[rowB] = cB;
    }
    if (err) {
      const float e = warp_sum(tq == 0 ? nA * eA + nB * eB : 0.f);
      if (lane == 0) errw[warp * RMAX + r] = e;
    }
  }
  if (err) {
    __syncthreads();
    for (int r = threadIdx.x; r < R; r += blockDim.x) {
      float s = 0.f;
      for (int w = 0; w < warps; ++w) s += errw[w * RMAX + r];
      err[(long long)(r * G + g) * errStride + blockIdx.x] += s;
    }
  }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(MAX_WARPS * 32) key_encode_d64(const float* V, const float* n2, const float* tables, int N, int R,
                                                                        int* codes, int codeStride, float* err, int errStride) {
  encode<64>(V, n2, tables, N, R, codes, codeStride, err, errStride);
}
extern "C" __global__ void __launch_bounds__(MAX_WARPS * 32) key_encode_d128(const float* V, const float* n2, const float* tables, int N, int R,
                                                                         int* codes, int codeStride, float* err, int errStride) {
  encode<128>(V, n2, tables, N, R, codes, codeStride, err, errStride);
}
