// commvq_value_bits.cu — the weighted bit sums of the value side of CommVQ decode attention (spec §6.8, PAPER eq. 22):
//   S[b, h, d] = Σ_{t < N_b} a_{b,h,t} · ρ′_{b,t} · bit_d(t),   a = exp(s − M)·(1/Z) (the joint softmax weights)
// computed on tensor cores straight from the packed bits, split over tokens into f32 partials (no atomics), then
// summed over the splits. commvq_value_out.cu multiplies S by the codebook E and the per-channel scale.
//
// Weights: one f16 term per (token, head), w̃ = f16(exp(s − M) · ρ′ · 2^k), times the bits (0 or an exact f16
// power of two, see the MMA mapping) by mma.sync m16n8k16 into f32 accumulators; the CTA's partial is then scaled
// by 2^-k · (1/Z) in f32 (a power of two and one rounding). One f16 term halves the MMAs of the former bf16 hi + lo
// pair. Why f16 suffices:
//   - range: exp(s − M) ≤ 1 (M is the max of the same f32 logits) and 2^k puts the run's largest ρ′ in [2^14, 2^15),
//     so w̃ < 2^15 never overflows f16 (max 65504), however large ρ′ is (a near-zero ‖bE‖ makes it huge); the factor
//     2 of headroom also covers an M a little below the logits' max (up to ln 2);
//   - precision: a normal w̃ is within 2^-11 relative, so output channel c moves by ≤ 2^-11 · Σ_t a_t·|v̂_t,c|, far
//     below the 1-bit values' own quantization error (~30%); a subnormal w̃ (< 2^-14) is within 2^-25 absolute, i.e.
//     ≤ 2^-39 · (the run's max ρ′) per token in units of exp(s − M)·ρ′.
// 2^k comes from the CTA's own token run (one read of its ≤ per_b ρ′), so like the cut it depends on N_b only.
//
// Tensors:
//   logits      [B, H_q, logitStride]        f32   compressed logits (commvq_key_logits.cu); logitStride % 64 == 0
//   ms          [B, H_q] float2              f32   (M, 1/Z) (commvq_softmax_stats.cu)
//   rho         [B, capacity]                bf16  ρ′_t
//   bits        [B, capacity, N_c/8]         u8    bit d of token t: byte d/8, bit d mod 8 (LSB first)
//   compressed  int32 [B]                          N_b ≤ capacity; capacity % 64 == 0
//   partial     [B, splits, N_c, Hp]         f32   workspace; Hp = 32·ceil(H_q / 32); already scaled by 1/Z
//   S           [B, N_c, Hp]                 f32   out of the reduce kernel
// Sequence b's tokens are cut into `splits` runs of per_b = 64·ceil(ceil(N_b / splits) / 64) tokens: the cut depends
// on N_b only, so a sequence gives the same bits in any batch.
//
// Launch, split kernel: grid (splits, N_c / 512, B·ceil(H_q / 32)), block 256 threads (8 warps), dynamic shared memory
//   kSmemBytes ≈ 62 KiB. A CTA owns 512 bits (64 per warp) × 32 query heads × one run of tokens, in steps of 64 tokens.
//   Pipeline, one barrier per step: bits, logits and ρ′ are staged with cp.async three steps ahead (kStages buffers);
//   during step s every thread computes 8 weights of step s + 1 (f16, into the other of two weight buffers) and then
//   every warp runs step s's MMAs, so the SFU work and the copies overlap the tensor cores. MMA mapping: M = bits (row
//   g of m-tile mt ↔ bit 8g + mt, row g+8 ↔ bit 8g + 4 + mt of the warp's 64, so a thread's bits of one token are one
//   byte), N = heads, K = tokens; B fragments come by ldmatrix. A fragments take one AND per register: a set bit of
//   m-tile mt is the f16 power of two 2^(2^mt − 15) (the byte pair shifted left by 10 for rows g, by 6 for rows g + 8,
//   puts bit mt or 4 + mt on exponent bit 10 + mt), which every product of that m-tile's accumulators shares, so the
//   epilogue's 2^(15 − 2^mt) undoes it exactly (products ≥ 2^-24·2^-14 stay normal f32).
//   Each of the N_c / 512 CTAs of a run computes the run's weights again (8 per thread and step: ~6 instructions each
//   against 64 MMAs per warp): cheaper than a CTA holding all N_c bits (1024 × 32 f32 accumulators are half the
//   register file, 2048 do not fit) or a separate pass writing and rereading f16 weights (8 MB at 128K tokens).
// Launch, reduce kernel: grid (N_c·Hp / 256, B), block 256 threads: 64 float4 columns of S × 4 groups of splits.
// Accumulation: f32 (products of f16 w̃ and exact powers of two).
// Entry points: commvq_value_bits_split, commvq_value_bits_reduce.

#include <cuda_bf16.h>

#include "tensor_core.cuh"

namespace {

__device__ __forceinline__ void add4(float4& a, const float4& b) {
  a.x += b.x;
  a.y += b.y;
  a.z += b.z;
  a.w += b.w;
}

constexpr int kThreads = 256;
constexpr int kStep = 64;                      // tokens per pipeline step
constexpr int kHeads = 32;                     // query heads per CTA (4 n-tiles of 8)
constexpr int kCtaBytes = 64;                  // bytes of each token's bits per CTA (512 bits, 8 per warp)
constexpr int kStages = 4;                     // staging buffers: steps s (mma), s + 1 (weights), s + 2, s + 3 (copies)
constexpr int kBitRow = kCtaBytes + 16;        // padded: tokens 2 apart land 8 banks apart
constexpr int kWRow = kStep + 8;               // f16 per head row of weights (144 B: ldmatrix rows 4 banks apart)
constexpr int kBitBytes = kStep * kBitRow;     // one stage: bits [kStep][kBitRow] u8,
constexpr int kLogitBytes = kHeads * kStep * 4;  //          logits [kHeads][kStep] f32,
constexpr int kRhoBytes = kStep * 2;             //          ρ′ [kStep] bf16
constexpr int kStageBytes = kBitBytes + kLogitBytes + kRhoBytes;
constexpr int kWBytes = kHeads * kWRow * 2;    // weights [kHeads][kWRow] f16, two buffers
constexpr int kSmemBytes = kStages * kStageBytes + 2 * kWBytes + kHeads * 8 + (kThreads / 32) * 4;
static_assert(kSmemBytes <= 96 * 1024, "two CTAs per SM must fit in shared memory");
static_assert(kStep * (kCtaBytes / 16) == kThreads, "one 16-byte chunk of bits per thread and step");
static_assert(kHeads * (kStep / 4) == 2 * kThreads, "two 16-byte chunks of logits per thread and step");
static_assert(kHeads * (kStep / 8) == kThreads, "8 weights per thread and step");
constexpr int kReduceCols = 64;                // reduce: float4 columns of S per CTA,
constexpr int kReduceGroups = kThreads / kReduceCols;  // each summed by this many threads over interleaved splits
constexpr float kLog2e = 1.4426950408889634f;

// bits 10 + mt and 26 + mt of x as two f16 values 0 or 2^(2^mt − 15) (low half = bit 10 + mt): one exponent bit
__device__ __forceinline__ u32 bit_pow2(u32 x, int mt) { return x & (0x04000400u << mt); }
// 2^(15 − 2^mt) as f32: undoes bit_pow2's value
__device__ __forceinline__ float unpow2(int mt) { return __int_as_float((127 + 15 - (1 << mt)) << 23); }

__device__ __forceinline__ int run_length(int N, int splits) {
  const int per = (N + splits - 1) / splits;
  return (per + kStep - 1) / kStep * kStep;
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads, 2) commvq_value_bits_split(
    const float* __restrict__ logits, const float2* __restrict__ ms, const __nv_bfloat16* __restrict__ rho,
    const unsigned char* __restrict__ bits, const int* __restrict__ compressed, float* __restrict__ partial, int Hq,
    int Hp, int Nc, int capacity, int logitStride, int splits) {
  const int headBlocks = Hp / kHeads;
  const int b = blockIdx.z / headBlocks;
  const int hb = blockIdx.z % headBlocks;
  const int N = compressed[b];
  const int per = run_length(N, splits);
  const int t0 = blockIdx.x * per;
  if (N == 0 || t0 >= N) return;
  const int tEnd = min(N, t0 + per);
  const int steps = (tEnd - t0 + kStep - 1) / kStep;
  const int NB = Nc / 8;
  const int byte0 = blockIdx.y * kCtaBytes;
  const int bytesHere = min(kCtaBytes, NB - byte0);  // a multiple of 16 (N_c % 128 == 0)

  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* const wbuf = smem + kStages * kStageBytes;                      // [2][kHeads][kWRow] f16
  float2* const mz = reinterpret_cast<float2*>(wbuf + 2 * kWBytes);              // [kHeads] (M, 1/Z)
  u32* const red = reinterpret_cast<u32*>(mz + kHeads);                          // [warps] max ρ′ bits
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int c = lane & 3;
  const unsigned short* const rhoB = reinterpret_cast<const unsigned short*>(rho) + static_cast<size_t>(b) * capacity;

  if (tid < kHeads) {
    const int hq = hb * kHeads + tid;
    mz[tid] = hq < Hq ? ms[static_cast<size_t>(b) * Hq + hq] : make_float2(0.f, 0.f);
  }

  // copies of one step: this thread's 16-byte chunk of bits (token tid / 4, chunk tid % 4), its two chunks of logits
  // (heads tid / 16 and tid / 16 + 16, tokens 4·(tid % 16) ..) and, for tid < 8, one chunk of ρ′
  const int cTok = tid / (kCtaBytes / 16);
  const int cCh = tid % (kCtaBytes / 16);
  const bool bitsOk = cCh * 16 < bytesHere;
  const unsigned char* const bitSrc = bits + (static_cast<size_t>(b) * capacity + t0 + cTok) * NB + byte0 + cCh * 16;
  const u32 bitDst = smem_addr(smem + cTok * kBitRow + cCh * 16);
  const int lH = tid / (kStep / 4);
  const int lCh = tid % (kStep / 4);
  const bool logit0Ok = hb * kHeads + lH < Hq;
  const bool logit1Ok = hb * kHeads + lH + kHeads / 2 < Hq;
  const float* const logitSrc = logits + (static_cast<size_t>(b) * Hq + hb * kHeads + lH) * logitStride + t0 + lCh * 4;
  const size_t logitHalf = static_cast<size_t>(kHeads / 2) * logitStride;  // heads lH + 16
  const u32 logitDst = smem_addr(smem + kBitBytes + (lH * kStep + lCh * 4) * 4);
  const u32 rhoDst = smem_addr(smem + kBitBytes + kLogitBytes + tid * 16);
  auto issue = [&](int step) {
    if (step < steps) {  // ts + 63 < roundUp64(N) ≤ capacity and ≤ logitStride for ts = t0 + step·kStep
      const u32 st = (step % kStages) * kStageBytes;
      const int dt = step * kStep;
      if (bitsOk) cp_async_16(bitDst + st, bitSrc + static_cast<size_t>(dt) * NB);
      if (logit0Ok) cp_async_16(logitDst + st, logitSrc + dt);
      if (logit1Ok) cp_async_16(logitDst + st + (kHeads / 2) * kStep * 4, logitSrc + logitHalf + dt);
      if (tid < kStep / 8) cp_async_16(rhoDst + st, rhoB + t0 + dt + tid * 8);
    }
    cp_async_commit();  // an empty group past the end keeps the wait count uniform
  };
  for (int s = 0; s < kStages - 1; ++s) issue(s);

  // the run's largest ρ′ (bf16 bits; ρ′ ≥ 0, so bit order is value order), while the first copies fly
  u32 rmax = 0;
  for (int t = t0 + tid * 8; t < tEnd; t += kThreads * 8) {  // t % 8 == 0: 16-byte aligned, t + 7 < capacity
    const uint4 v = *reinterpret_cast<const uint4*>(rhoB + t);
    const u32 pair[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const u32 r = (pair[i / 2] >> (16 * (i & 1))) & 0x7fffu;
      if (t + i < tEnd && r > rmax) rmax = r;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const u32 other = __shfl_xor_sync(0xffffffffu, rmax, o);
    rmax = other > rmax ? other : rmax;
  }
  if (lane == 0) red[warp] = rmax;

  // weights: thread → head wh, tokens 8·wj .. 8·wj + 7 of a step
  const int wh = tid >> 3;
  const int wj = tid & 7;
  const bool headOk = hb * kHeads + wh < Hq;
  float m = 0.f;   // M of head wh
  float up = 1.f;  // 2^k
  auto weights = [&](int step) {
    const unsigned char* const st = smem + (step % kStages) * kStageBytes;
    const float4* const lg = reinterpret_cast<const float4*>(st + kBitBytes + (wh * kStep + wj * 8) * 4);
    const float4 l0 = lg[0];
    const float4 l1 = lg[1];
    const uint4 rv = *reinterpret_cast<const uint4*>(st + kBitBytes + kLogitBytes + wj * 16);
    const float l[8] = {l0.x, l0.y, l0.z, l0.w, l1.x, l1.y, l1.z, l1.w};
    const u32 r[4] = {rv.x, rv.y, rv.z, rv.w};
    const int valid = headOk ? tEnd - (t0 + step * kStep + wj * 8) : 0;  // the first `valid` of the 8 are real
    u32 packed[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float r0 = __uint_as_float(r[i] << 16) * up;  // ρ′·2^k, exact
      const float r1 = __uint_as_float(r[i] & 0xffff0000u) * up;
      const float w0 = fast_exp2((l[2 * i] - m) * kLog2e) * r0;  // s − M: exact near the max (Sterbenz)
      const float w1 = fast_exp2((l[2 * i + 1] - m) * kLog2e) * r1;
      packed[i] = pack_f16(2 * i < valid ? w0 : 0.f, 2 * i + 1 < valid ? w1 : 0.f);  // selects drop NaN past the end
    }
    *reinterpret_cast<uint4*>(wbuf + (step & 1) * kWBytes + (wh * kWRow + wj * 8) * 2) =
        make_uint4(packed[0], packed[1], packed[2], packed[3]);
  };

  cp_async_wait<kStages - 2>();  // step 0 landed
  __syncthreads();               // ... for every thread; mz and red written
  u32 rm = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) rm = red[w] > rm ? red[w] : rm;
  const int e = static_cast<int>(rm >> 7) - 127;  // max ρ′ ∈ [2^e, 2^(e+1)); −127 for 0 (then any k will do)
  const int k = min(64, max(-64, 14 - e));        // max ρ′·2^k ∈ [2^14, 2^15)
  up = __int_as_float((127 + k) << 23);
  m = mz[wh].x;
  weights(0);
  cp_async_wait<kStages - 3>();  // steps 0 and 1 landed
  __syncthreads();

  float acc[4][4][4];  // [m-tile][n-tile][fragment]
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  const bool warpHasBits = warp * 8 < bytesHere;
  // ldmatrix.x4 of n-tiles (2p, 2p + 1): lane → row (lane & 7) of matrix m = lane >> 3, which holds heads of n-tile
  // 2p + m/2 and tokens 8·(m & 1) .. + 7 of the k-block: registers (b0, b1) of n-tile 2p, then of 2p + 1
  const u32 ldRow = smem_addr(wbuf) + ((((lane >> 4) * 8 + (lane & 7)) * kWRow + ((lane >> 3) & 1) * 8) * 2);
  for (int step = 0; step < steps; ++step) {
    issue(step + kStages - 1);             // into the buffer step − 1 used: everyone passed the barrier after it
    if (step + 1 < steps) weights(step + 1);  // into the weight buffer step − 1 used
    if (warpHasBits) {
      const unsigned char* sb = smem + (step % kStages) * kStageBytes + warp * 8 + g;
      const u32 wrow = ldRow + (step & 1) * kWBytes;
#pragma unroll
      for (int kk = 0; kk < kStep / 16; ++kk) {
        const int k0 = kk * 16 + 2 * c;
        const u32 x01 = static_cast<u32>(sb[k0 * kBitRow]) | (static_cast<u32>(sb[(k0 + 1) * kBitRow]) << 16);
        const u32 x89 = static_cast<u32>(sb[(k0 + 8) * kBitRow]) | (static_cast<u32>(sb[(k0 + 9) * kBitRow]) << 16);
        const u32 lo01 = x01 << 10;  // bit mt of tokens k0, k0 + 1 on bits 10 + mt, 26 + mt
        const u32 hi01 = x01 << 6;   // bit 4 + mt there
        const u32 lo89 = x89 << 10;
        const u32 hi89 = x89 << 6;
        u32 bw[4][2];  // [n-tile]: tokens k0, k0 + 1 and k0 + 8, k0 + 9 of head 8·nt + g
        ldmatrix_x4(wrow + kk * 32, bw[0][0], bw[0][1], bw[1][0], bw[1][1]);
        ldmatrix_x4(wrow + kk * 32 + 16 * kWRow * 2, bw[2][0], bw[2][1], bw[3][0], bw[3][1]);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          const u32 a0 = bit_pow2(lo01, mt);  // row g (bit 8g + mt), tokens k0, k0 + 1
          const u32 a1 = bit_pow2(hi01, mt);  // row g + 8 (bit 8g + 4 + mt)
          const u32 a2 = bit_pow2(lo89, mt);  // row g, tokens k0 + 8, k0 + 9
          const u32 a3 = bit_pow2(hi89, mt);
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) mma_f16_f32(acc[mt][nt], a0, a1, a2, a3, bw[nt][0], bw[nt][1]);
        }
      }
    }
    cp_async_wait<kStages - 3>();  // step + 2 landed (only step + 3 may still fly)
    __syncthreads();               // ... for every thread; step's bits and weights are free
  }

  if (!warpHasBits) return;
  // C fragment: c0, c1 at (row g, heads 2c, 2c + 1), c2, c3 at (row g + 8, same heads); scaled by 2^-k·(1/Z) and
  // the m-tile's 2^(15 − 2^mt), each exact
  float* out = partial + (static_cast<size_t>(b) * splits + blockIdx.x) * Nc * Hp;
  const int dWarp = byte0 * 8 + warp * 64;
  const float down = __int_as_float((254 << 23) - __float_as_int(up));  // 2^-k
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const int h = nt * 8 + 2 * c;
    const float z0 = mz[h].y * down;  // exact: 1/Z ∈ [2^-25, 1] (Z ≥ e^0 = 1, N + E < 2^25), 2^-k ∈ [2^-64, 2^64]
    const float z1 = mz[h + 1].y * down;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      const float f0 = z0 * unpow2(mt);  // ≤ 2^78: finite
      const float f1 = z1 * unpow2(mt);
      const int d0 = dWarp + 8 * g + mt;
      const int d1 = d0 + 4;
      const float* a = acc[mt][nt];
      const int col = hb * kHeads + h;
      *reinterpret_cast<float2*>(out + static_cast<size_t>(d0) * Hp + col) = make_float2(a[0] * f0, a[1] * f1);
      *reinterpret_cast<float2*>(out + static_cast<size_t>(d1) * Hp + col) = make_float2(a[2] * f0, a[3] * f1);
    }
  }
}

// S = Σ over the used splits of the partials: a thread sums every kReduceGroups-th split of one float4 column, eight
// loads in flight (the bound of 4 CTAs per SM lets ptxas take the 56 registers that needs; without it ptxas kept to
// 32), then the groups' sums are added in group order, so the order depends on N_b only.
extern "C" __global__ void __launch_bounds__(kThreads, 4)
    commvq_value_bits_reduce(const float* __restrict__ partial, const int* __restrict__ compressed,
                             float* __restrict__ S, int Hp, int Nc, int splits) {
  __shared__ float4 part[kReduceGroups][kReduceCols];
  const int b = blockIdx.y;
  const int col = threadIdx.x % kReduceCols;
  const int grp = threadIdx.x / kReduceCols;
  const size_t plane = static_cast<size_t>(Nc) * Hp;  // floats per split, a multiple of 4096
  const size_t i = (static_cast<size_t>(blockIdx.x) * kReduceCols + col) * 4;
  const bool in = i < plane;
  const int N = compressed[b];
  const int per = run_length(N, splits);
  const int used = N == 0 ? 0 : (N + per - 1) / per;
  const float* p = partial + static_cast<size_t>(b) * splits * plane + i;
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
  int s = in ? grp : used;
  for (; s + 7 * kReduceGroups < used; s += 8 * kReduceGroups) {  // eight loads in flight
    float4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) v[u] = *reinterpret_cast<const float4*>(p + (s + u * kReduceGroups) * plane);
#pragma unroll
    for (int u = 0; u < 8; ++u) add4(sum, v[u]);
  }
  for (; s < used; s += kReduceGroups) add4(sum, *reinterpret_cast<const float4*>(p + s * plane));
  part[grp][col] = sum;
  __syncthreads();
  if (grp != 0 || !in) return;
#pragma unroll
  for (int g = 1; g < kReduceGroups; ++g) add4(sum, part[g][col]);
  *reinterpret_cast<float4*>(S + static_cast<size_t>(b) * plane + i) = sum;
}
