// commvq_pack.cu — stores newly encoded tokens into one sequence's packed CommVQ arrays (the layouts of
// src/core/commvq/code-packing.ts and CodeAttentionBuffers), as CommvqCache.encodeBlock does on the host.
//
// commvq_pack_keys: codes [R, G, n] i32 (as key_assign writes them) and n2 [n] f32 →
//   keyCodes [n, packedCodeBytes(R·G)] u8: token t's R·G codes in order [r][g], 12 bits each, two codes in three
//     bytes LSB-first (packCodes12; an odd count leaves its last code in two bytes, high nibble 0);
//   keyNorms [n] bf16: √n2_t rounded to nearest even.
//   Launch: grid ceil(n / 256), block 256, one thread per token. Pointers are row 0 of this call (the launcher adds
//   rowStart); code i of token t is codes[i·stride + t] (stride ≥ n: the tokens of one sequence within codes encoded
//   for several, the pointer offset to the first), so the reads are coalesced over t.
//
// commvq_pack_value_bits: bits [n, N_c] f32 (0/1; any nonzero non-NaN value counts as 1, as packBits) →
//   valueBits [n, N_c/8] u8 LSB-first, written as u32 words (bit i of a row = bit i mod 32 of word i / 32).
//   Launch: grid ceil(n·N_c/32 / 256), block 256, one thread per word.
//
// commvq_pack_value_argmax: the argmax encoder's last step and the pack in one pass (no [n, N_c] f32 bits): logits
//   [n, 4·n_e] f32 (the second GEMM's output, bias not yet added) + bias [4·n_e] f32 → for each group the first k
//   with the largest ℓ_k + b_k (value_gumbel_bits without noise: the same comparisons of the same f32 sums), bits
//   (2g, 2g+1) = {(1,0), (0,1), (1,1), (0,0)}[k], written to valueBits [n, N_c/8] as u32 words as above.
//   Launch: grid ceil(n·N_c/32 / 256), block 256, one thread per word (16 groups, 16 float4 loads).
//
// commvq_value_sumsq: partial [gridDim.y, n] f32 = Σ over each 128-channel tile of W[t, c]², W = b_t·E (the tile core
//   of commvq_bits_gemm.cuh, reading the bits just packed). Launch: grid (ceil(n/64), ceil(D/128)), block 256.
//   The 4 lanes sharing a token reduce by shuffles, the two warps of a token's 128 channels through shared memory,
//   in a fixed order: no atomics, deterministic.
//
// commvq_value_rho: valueRho [n] bf16 = (ρ_t + 1e-6)/(√(Σ_y partial[y, t]) + 1e-6) (tiles summed in increasing y).
//   Launch: grid ceil(n / 256), block 256.
//
// Accumulation: f32 throughout (W's products exact on tensor cores); each stored value rounds once.
#include "commvq_bits_gemm.cuh"

extern "C" __global__ void commvq_pack_keys(const int* __restrict__ codes, const float* __restrict__ n2, unsigned char* __restrict__ keyCodes,
                                            __nv_bfloat16* __restrict__ keyNorms, int n, int RG, int rowBytes, int stride) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n) return;
  unsigned char* row = keyCodes + (long long)t * rowBytes;
  for (int i = 0, o = 0; i < RG; i += 2, o += 3) {
    const unsigned a = (unsigned)codes[(long long)i * stride + t] & 0xfffu;
    const bool pair = i + 1 < RG;
    const unsigned b = pair ? (unsigned)codes[(long long)(i + 1) * stride + t] & 0xfffu : 0u;
    row[o] = (unsigned char)(a & 0xffu);
    row[o + 1] = (unsigned char)((a >> 8) | ((b & 0xfu) << 4));
    if (pair) row[o + 2] = (unsigned char)(b >> 4);
  }
  keyNorms[t] = f2bf(sqrtf(fmaxf(n2[t], 0.f)));
}

extern "C" __global__ void commvq_pack_value_bits(const float* __restrict__ bits, unsigned* __restrict__ valueBits, int n, int Nc) {
  const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const int words = Nc >> 5;
  if (w >= (long long)n * words) return;
  const float* src = bits + w * 32;  // rows are whole words: word w holds bits 32·(w mod words) .. of row w / words
  unsigned x = 0u;
#pragma unroll 8
  for (int i = 0; i < 32; ++i) {
    const float v = src[i];
    if (v != 0.f && v == v) x |= 1u << i;
  }
  valueBits[w] = x;
}

extern "C" __global__ void commvq_pack_value_argmax(const float* __restrict__ logits, const float* __restrict__ bias, unsigned* __restrict__ valueBits,
                                                    int n, int Nc) {
  const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const int words = Nc >> 5;
  if (w >= (long long)n * words) return;
  const float4* src = reinterpret_cast<const float4*>(logits) + w * 16;  // the word's 16 groups
  const float4* b4 = reinterpret_cast<const float4*>(bias) + (w % words) * 16;
  const unsigned kBits[4] = {1u, 2u, 3u, 0u};  // (bit 2g, bit 2g+1) of category k, as bit 0 and bit 1
  unsigned x = 0u;
#pragma unroll 4
  for (int j = 0; j < 16; ++j) {
    const float4 l = src[j], b = b4[j];
    const float z[4] = {l.x + b.x, l.y + b.y, l.z + b.z, l.w + b.w};
    int k = 0;
#pragma unroll
    for (int c = 1; c < 4; ++c) if (z[c] > z[k]) k = c;  // NaN never wins, as in value_gumbel_bits
    x |= kBits[k] << (2 * j);
  }
  valueBits[w] = x;
}

extern "C" __global__ void __launch_bounds__(bits_gemm::THREADS) commvq_value_sumsq(const unsigned* __restrict__ valueBits, const __nv_bfloat16* __restrict__ E,
                                                                                   float* __restrict__ partial, int n, int Nc, int D) {
  __shared__ __align__(16) bits_gemm::Shared s;
  __shared__ float half[2][bits_gemm::TT];  // Σ W² of each token over each warp column (64 channels)
  float acc[8][4];
  bits_gemm::tile(s, valueBits, E, n, Nc, D, acc);
  const int lane = threadIdx.x & 31, g = lane >> 2;
  float qa = 0.f, qb = 0.f;  // tokens g and g + 8 of the warp; channels past D hold exact zeros
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    qa = fmaf(acc[nt][0], acc[nt][0], fmaf(acc[nt][1], acc[nt][1], qa));
    qb = fmaf(acc[nt][2], acc[nt][2], fmaf(acc[nt][3], acc[nt][3], qb));
  }
  for (int o = 1; o < 4; o <<= 1) {  // the 4 lanes of a token, in a fixed order
    qa += __shfl_xor_sync(0xffffffffu, qa, o);
    qb += __shfl_xor_sync(0xffffffffu, qb, o);
  }
  const int wt = bits_gemm::warp_token(), side = bits_gemm::warp_channel() / 64;
  if ((lane & 3) == 0) {
    half[side][wt + g] = qa;
    half[side][wt + g + 8] = qb;
  }
  __syncthreads();
  const int t = blockIdx.x * bits_gemm::TT + threadIdx.x;
  if (threadIdx.x < bits_gemm::TT && t < n) partial[(long long)blockIdx.y * n + t] = half[0][threadIdx.x] + half[1][threadIdx.x];
}

extern "C" __global__ void commvq_value_rho(const float* __restrict__ partial, const float* __restrict__ rho, __nv_bfloat16* __restrict__ valueRho,
                                            int n, int tiles) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n) return;
  float s = 0.f;
  for (int y = 0; y < tiles; ++y) s += partial[(long long)y * n + t];
  valueRho[t] = f2bf((rho[t] + 1e-6f) / (sqrtf(s) + 1e-6f));
}
