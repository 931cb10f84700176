// commvq_value_out.cu — the attention output of one decode step of a CommVQ cache: the compressed tokens' part from
// the weighted bit sums S (commvq_value_bits.cu) times the value codebook, then the per-channel scale (the corrected
// order of spec §6.8 / §7.2: the scale acts on channels, after the codebook), plus the exact tokens' part.
//
// Math, sequence b, query head h (kv head g), channel c < D_h, with (M, 1/Z) the joint softmax statistics:
//   out[b, h, c] = (Σ_d S[b, d, h] · E[d, g·D_h + c]) · (ls[g·D_h + c] + 1e-6)
//                + Σ_{t < E_b} exp(s_t − M)/Z · v[b, t, g·D_h + c]
//
// Tensors:
//   S        [B, N_c, Hp]              f32   weighted bit sums (Hp ≥ H_q: padded head stride)
//   ms       [B, H_q] float2           f32   (M, 1/Z)
//   E        [N_c, H_kv·D_h]           bf16  value codebook
//   ls       [H_kv·D_h]                f32   per-channel scale
//   logits   [B, H_q, window]          f32   exact-token logits (commvq_exact_logits.cu)
//   v        [B, window, H_kv·D_h]     bf16  exact values, rows t < E_b valid
//   exact    int32 [B]                       E_b
//   out      [B, H_q·D_h]              f32 or bf16
//
// Launch: grid (H_q, B), block 256 threads, dynamic shared memory N_c·4 bytes (S of the head) + 2·256·4 (partials).
//   Thread (part, c) with c = tid mod D_h, part = tid / D_h sums every (256/D_h)-th codebook row and exact token;
//   loads of E and v rows are coalesced across c. The parts are then added in shared memory.
// Accumulation: f32; only the final store rounds (bf16 entry point).
// Entry points: commvq_value_out_f32, commvq_value_out_bf16.

#include <cuda_bf16.h>

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ void value_out(const float* __restrict__ S, const float2* __restrict__ ms,
                                          const __nv_bfloat16* __restrict__ E, const float* __restrict__ ls,
                                          const float* __restrict__ logits, const __nv_bfloat16* __restrict__ v,
                                          const int* __restrict__ exact, T* __restrict__ out, int Hq, int Hkv, int Hp,
                                          int D, int Nc, int window) {
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  const int g = h / (Hq / Hkv);
  const int F = Hkv * D;
  extern __shared__ float smem[];
  float* sS = smem;               // [N_c]
  float* sPart = smem + Nc;       // [2][256]
  const float* Sb = S + static_cast<size_t>(b) * Nc * Hp + h;
  for (int d = threadIdx.x; d < Nc; d += kThreads) sS[d] = Sb[static_cast<size_t>(d) * Hp];
  __syncthreads();

  const int parts = kThreads / D;
  const int c = threadIdx.x % D;
  const int part = threadIdx.x / D;
  float accQ = 0.f;
  float accE = 0.f;
  if (part < parts) {
    const __nv_bfloat16* Ec = E + static_cast<size_t>(g) * D + c;
#pragma unroll 8
    for (int d = part; d < Nc; d += parts) accQ += sS[d] * __bfloat162float(Ec[static_cast<size_t>(d) * F]);
    const float2 mz = ms[static_cast<size_t>(b) * Hq + h];
    const float* lg = logits + (static_cast<size_t>(b) * Hq + h) * window;
    const __nv_bfloat16* vc = v + static_cast<size_t>(b) * window * F + static_cast<size_t>(g) * D + c;
    const int Eb = exact[b];
    for (int t = part; t < Eb; t += parts) accE += expf(lg[t] - mz.x) * mz.y * __bfloat162float(vc[static_cast<size_t>(t) * F]);
  }
  sPart[threadIdx.x] = accQ;
  sPart[kThreads + threadIdx.x] = accE;
  __syncthreads();
  if (threadIdx.x < D) {
    float q = 0.f;
    float e = 0.f;
    for (int p = 0; p < parts; ++p) {
      q += sPart[p * D + c];
      e += sPart[kThreads + p * D + c];
    }
    store(out + (static_cast<size_t>(b) * Hq + h) * D + c, q * (ls[g * D + c] + 1e-6f) + e);
  }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_out_f32(
    const float* S, const float2* ms, const __nv_bfloat16* E, const float* ls, const float* logits,
    const __nv_bfloat16* v, const int* exact, float* out, int Hq, int Hkv, int Hp, int D, int Nc, int window) {
  value_out(S, ms, E, ls, logits, v, exact, out, Hq, Hkv, Hp, D, Nc, window);
}

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_out_bf16(
    const float* S, const float2* ms, const __nv_bfloat16* E, const float* ls, const float* logits,
    const __nv_bfloat16* v, const int* exact, __nv_bfloat16* out, int Hq, int Hkv, int Hp, int D, int Nc,
    int window) {
  value_out(S, ms, E, ls, logits, v, exact, out, Hq, Hkv, Hp, D, Nc, window);
}
