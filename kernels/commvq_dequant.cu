// commvq_dequant.cu — dense keys and values of stored CommVQ tokens (CommvqCache.dequantized on the host), for
// attention over a compressed prefix during chunked prefill.
//
// commvq_dequant_keys: k̂_t = n_t · Σ_r C_{r,g}[code_{t,r,g}], pre-RoPE, HF layout. C[64A + B] at pair j is
//   (X_{A,j} − Y_{B,j}, Y_{A,j} + X_{B,j}) in PI layout (src/core/keys/codebook.ts); PI[2j + u] = HF[u·P + j].
//   keyCodes [n, packedCodeBytes(R·G)] u8   12-bit codes per token in order [r][g] (code-packing.ts)
//   keyNorms [n] bf16                        n_t
//   theta    [R, G, 128, P] f32              θ_{r,g}[2i, j] = X_{i,j}, θ_{r,g}[2i+1, j] = Y_{i,j}
//   out      [n, G·D_h] bf16                 out[t, g·D_h + j] = n_t·Re_j, out[t, g·D_h + P + j] = n_t·Im_j
//   Launch: grid ceil(n / 8), block 256, dynamic shared memory 8·R·G·2 bytes (the tile's unpacked codes).
//   The block unpacks the codes of its 8 tokens once; thread (unit, j) then sums stage r = 0, 1, … in f32 for the
//   pair j of one (token, group) unit (θ rows are read coalesced over j, from L2/L1). One bf16 rounding at the end.
//
// commvq_dequant_values: v̂_t = (b_t·E) · ρ′_t ⊙ (ls + 1e-6).
//   valueBits [n, N_c/8] u8 LSB-first (read as u32 words)   valueRho [n] bf16   E [N_c, D] bf16   ls [D] f32
//   out [n, D] bf16
//   Launch: grid (ceil(n/64), ceil(D/128)), block 256 — the tile core of commvq_bits_gemm.cuh (tensor cores), then the
//   epilogue. f32 accumulation, one bf16 rounding.
//
// Pointers are row 0 of this call (the launcher adds the first row); every index is 64-bit where it can exceed 2^31.
#include "commvq_bits_gemm.cuh"

#define DQ_TOKENS 8

extern "C" __global__ void commvq_dequant_keys(const unsigned char* __restrict__ keyCodes, const __nv_bfloat16* __restrict__ keyNorms,
                                               const float* __restrict__ theta, __nv_bfloat16* __restrict__ out, int n, int R, int G, int P,
                                               int rowBytes) {
  extern __shared__ unsigned short codes[];  // [DQ_TOKENS][R·G]
  const int RG = R * G;
  const int t0 = blockIdx.x * DQ_TOKENS;
  const int tokens = min(DQ_TOKENS, n - t0);
  for (int e = threadIdx.x; e < tokens * RG; e += blockDim.x) {
    const int t = e / RG, k = e - t * RG;
    const unsigned char* b = keyCodes + (long long)(t0 + t) * rowBytes + (k >> 1) * 3;
    codes[e] = (k & 1) ? (unsigned short)((b[1] >> 4) | (b[2] << 4)) : (unsigned short)(b[0] | ((b[1] & 0x0f) << 8));
  }
  __syncthreads();
  const int D = 2 * P;
  const int perPass = blockDim.x / P;  // units (token, group) per pass: 4 for P = 64, 2 for P = 128
  const int j = threadIdx.x % P;
  const long long stage = 128LL * P;   // floats of one θ_{r,g}
  for (int u = threadIdx.x / P; u < tokens * G; u += perPass) {
    const int t = u / G, g = u - t * G;
    float re = 0.f, im = 0.f;
    for (int r = 0; r < R; ++r) {
      const int c = codes[t * RG + r * G + g];
      const int A = c >> 6, B = c & 63;
      const float* th = theta + (long long)(r * G + g) * stage;
      re += th[2 * A * P + j] - th[(2 * B + 1) * P + j];
      im += th[(2 * A + 1) * P + j] + th[2 * B * P + j];
    }
    const float nt = bf2f(keyNorms[t0 + t]);
    __nv_bfloat16* o = out + (long long)(t0 + t) * G * D + g * D;
    o[j] = f2bf(nt * re);
    o[P + j] = f2bf(nt * im);
  }
}

extern "C" __global__ void __launch_bounds__(bits_gemm::THREADS) commvq_dequant_values(const unsigned* __restrict__ valueBits,
                                                                                      const __nv_bfloat16* __restrict__ valueRho,
                                                                                      const __nv_bfloat16* __restrict__ E, const float* __restrict__ ls,
                                                                                      __nv_bfloat16* __restrict__ out, int n, int Nc, int D) {
  __shared__ __align__(16) bits_gemm::Shared s;
  float acc[8][4];
  bits_gemm::tile(s, valueBits, E, n, Nc, D, acc);
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int c0 = blockIdx.y * bits_gemm::TC + bits_gemm::warp_channel();
  if (c0 >= D) return;  // D is a multiple of 64: a warp's 64 channels are all in or all out
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int t = blockIdx.x * bits_gemm::TT + bits_gemm::warp_token() + g + 8 * h;
    if (t >= n) continue;
    const float rho = bf2f(valueRho[t]);
    __nv_bfloat16* row = out + (long long)t * D + c0;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int c = 8 * nt + 2 * q;
      const float lo = acc[nt][2 * h] * rho * (ls[c0 + c] + 1e-6f), hi = acc[nt][2 * h + 1] * rho * (ls[c0 + c + 1] + 1e-6f);
      *reinterpret_cast<unsigned*>(row + c) = pack_bf16(lo, hi);
    }
  }
}
