// commvq_value_bits.cu — the weighted bit sums of the value side of CommVQ decode attention (spec §6.8, PAPER eq. 22):
//   S[b, h, d] = Σ_{t < N_b} a_{b,h,t} · ρ′_{b,t} · bit_d(t),   a = exp(s − M)·(1/Z) (the joint softmax weights)
// computed on tensor cores straight from the packed bits, split over tokens into f32 partials (no atomics), then
// summed over the splits. commvq_value_out.cu multiplies S by the codebook E and the per-channel scale.
//
// Each weight w = a·ρ′ (f32) is split into two bf16 terms hi = bf16(w), lo = bf16(w − hi) and both are multiplied by
// the exact 0/1 bits with mma.sync m16n8k16 into the same f32 accumulators: hi + lo represents w to ~2^-17 relative
// and every product and sum is f32. (The reference rounds w to bf16 and atomically adds fp16 partials: §7.3.)
//
// Tensors:
//   logits      [B, H_q, logitStride]        f32   compressed logits (commvq_key_logits.cu); logitStride % 64 == 0
//   ms          [B, H_q] float2              f32   (M, 1/Z) (commvq_softmax_stats.cu)
//   rho         [B, capacity]                bf16  ρ′_t
//   bits        [B, capacity, N_c/8]         u8    bit d of token t: byte d/8, bit d mod 8 (LSB first)
//   compressed  int32 [B]                          N_b ≤ capacity; capacity % 64 == 0
//   partial     [B, splits, N_c, Hp]         f32   workspace; Hp = 32·ceil(H_q / 32)
//   S           [B, N_c, Hp]                 f32   out of the reduce kernel
// Sequence b's tokens are cut into `splits` runs of per_b = 64·ceil(ceil(N_b / splits) / 64) tokens: the cut depends
// on N_b only, so a sequence gives the same bits in any batch.
//
// Launch, split kernel: grid (splits, N_c / 512, B·ceil(H_q / 32)), block 256 threads (8 warps), static shared memory
//   ≈ 32 KiB. A CTA owns 512 bits (64 per warp) × 32 query heads × one run of tokens, in steps of 64 tokens that are
//   staged with cp.async one step ahead (bits, logits, ρ′); the weights of a step are computed once per CTA into shared
//   memory as (hi, lo) bf16. MMA mapping: M = bits (row g of m-tile mt ↔ bit 8g + mt, row g+8 ↔ bit 8g + 4 + mt of the
//   warp's 64, so a thread's bits of one token are one byte), N = heads, K = tokens; A fragments are built from the
//   bytes by shifts and one multiply (bit·0x3F80 is bf16 1.0).
// Launch, reduce kernel: grid (ceil(N_c·Hp / 1024), B), block 256 threads, one float4 of S per thread.
// Accumulation: f32.
// Entry points: commvq_value_bits_split, commvq_value_bits_reduce.

#include <cuda_bf16.h>

#include "tensor_core.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kStep = 64;                      // tokens per pipeline step
constexpr int kHeads = 32;                     // query heads per CTA (4 n-tiles of 8)
constexpr int kCtaBytes = 64;                  // bytes of each token's bits per CTA (512 bits, 8 per warp)
constexpr int kBitRow = kCtaBytes + 16;        // padded: tokens 2 apart land 8 banks apart
constexpr int kWRow = kStep / 2 + 4;           // u32 words per head row of weights (padded: 8 heads, 8 bank groups)

// bits 0 and 16 of x as two bf16 values 0.0 / 1.0 (low half = bit 0)
__device__ __forceinline__ u32 spread(u32 x) { return (x & 0x00010001u) * 0x3F80u; }

__device__ __forceinline__ int run_length(int N, int splits) {
  const int per = (N + splits - 1) / splits;
  return (per + kStep - 1) / kStep * kStep;
}

struct Smem {
  unsigned char bits[2][kStep * kBitRow];
  float logit[2][kHeads * kStep];
  __nv_bfloat16 rho[2][kStep];
  u32 whi[kHeads * kWRow];
  u32 wlo[kHeads * kWRow];
  float2 mz[kHeads];
};

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_bits_split(
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

  __shared__ __align__(16) Smem sm;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int c = lane & 3;

  if (tid < kHeads) {
    const int hq = hb * kHeads + tid;
    sm.mz[tid] = hq < Hq ? ms[static_cast<size_t>(b) * Hq + hq] : make_float2(0.f, 0.f);
  }

  auto issue = [&](int step) {
    if (step < steps) {
      const int buf = step & 1;
      const int ts = t0 + step * kStep;  // ts + 63 < roundUp64(N) ≤ capacity and ≤ logitStride
      for (int i = tid; i < kStep * (kCtaBytes / 16); i += kThreads) {
        const int tok = i / (kCtaBytes / 16);
        const int ch = i % (kCtaBytes / 16);
        if (ch * 16 < bytesHere) {
          const unsigned char* src = bits + (static_cast<size_t>(b) * capacity + ts + tok) * NB + byte0 + ch * 16;
          cp_async_16(smem_addr(&sm.bits[buf][tok * kBitRow + ch * 16]), src);
        }
      }
      for (int i = tid; i < kHeads * (kStep / 4); i += kThreads) {
        const int h = i / (kStep / 4);
        const int ch = i % (kStep / 4);
        const int hq = hb * kHeads + h;
        if (hq < Hq) {
          const float* src = logits + (static_cast<size_t>(b) * Hq + hq) * logitStride + ts + ch * 4;
          cp_async_16(smem_addr(&sm.logit[buf][h * kStep + ch * 4]), src);
        }
      }
      if (tid < kStep / 8) cp_async_16(smem_addr(&sm.rho[buf][tid * 8]), rho + static_cast<size_t>(b) * capacity + ts + tid * 8);
    }
    cp_async_commit();  // an empty group past the end keeps the wait count uniform
  };

  float acc[4][4][4];  // [m-tile][n-tile][fragment]
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

  const bool warpHasBits = warp * 8 < bytesHere;
  issue(0);
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<0>();
    __syncthreads();   // this step's data landed for every thread; the previous step is done with both buffers
    issue(step + 1);   // into the other buffer: its copies overlap this step's weights and mma
    const int buf = step & 1;
    const int ts = t0 + step * kStep;
    for (int i = tid; i < kHeads * kStep; i += kThreads) {
      const int h = i / kStep;
      const int tt = i % kStep;
      float w = 0.f;
      if (hb * kHeads + h < Hq && ts + tt < tEnd) {
        const float2 mz = sm.mz[h];
        w = expf(sm.logit[buf][h * kStep + tt] - mz.x) * mz.y * __bfloat162float(sm.rho[buf][tt]);
      }
      const __nv_bfloat16 hi = __float2bfloat16_rn(w);
      const __nv_bfloat16 lo = __float2bfloat16_rn(w - __bfloat162float(hi));
      reinterpret_cast<__nv_bfloat16*>(sm.whi)[h * 2 * kWRow + tt] = hi;
      reinterpret_cast<__nv_bfloat16*>(sm.wlo)[h * 2 * kWRow + tt] = lo;
    }
    __syncthreads();
    if (warpHasBits) {
      const unsigned char* sb = sm.bits[buf] + warp * 8 + g;
#pragma unroll
      for (int kk = 0; kk < kStep / 16; ++kk) {
        const int k0 = kk * 16 + 2 * c;
        const u32 w01 = static_cast<u32>(sb[k0 * kBitRow]) | (static_cast<u32>(sb[(k0 + 1) * kBitRow]) << 16);
        const u32 w89 = static_cast<u32>(sb[(k0 + 8) * kBitRow]) | (static_cast<u32>(sb[(k0 + 9) * kBitRow]) << 16);
        u32 bh0[4], bh1[4], bl0[4], bl1[4];
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const int row = (nt * 8 + g) * kWRow + kk * 8 + c;
          bh0[nt] = sm.whi[row];
          bh1[nt] = sm.whi[row + 4];
          bl0[nt] = sm.wlo[row];
          bl1[nt] = sm.wlo[row + 4];
        }
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          const u32 a0 = spread(w01 >> mt);        // row g (bit 8g + mt), tokens k0, k0 + 1
          const u32 a1 = spread(w01 >> (mt + 4));  // row g + 8 (bit 8g + 4 + mt)
          const u32 a2 = spread(w89 >> mt);        // row g, tokens k0 + 8, k0 + 9
          const u32 a3 = spread(w89 >> (mt + 4));
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) {
            mma_bf16(acc[mt][nt], a0, a1, a2, a3, bh0[nt], bh1[nt]);
            mma_bf16(acc[mt][nt], a0, a1, a2, a3, bl0[nt], bl1[nt]);
          }
        }
      }
    }
  }

  if (!warpHasBits) return;
  // C fragment: c0, c1 at (row g, heads 2c, 2c + 1), c2, c3 at (row g + 8, same heads)
  float* out = partial + (static_cast<size_t>(b) * splits + blockIdx.x) * Nc * Hp;
  const int dWarp = byte0 * 8 + warp * 64;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    const int d0 = dWarp + 8 * g + mt;
    const int d1 = d0 + 4;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int h = hb * kHeads + nt * 8 + 2 * c;
      *reinterpret_cast<float2*>(out + static_cast<size_t>(d0) * Hp + h) = make_float2(acc[mt][nt][0], acc[mt][nt][1]);
      *reinterpret_cast<float2*>(out + static_cast<size_t>(d1) * Hp + h) = make_float2(acc[mt][nt][2], acc[mt][nt][3]);
    }
  }
}

extern "C" __global__ void __launch_bounds__(kThreads) commvq_value_bits_reduce(const float* __restrict__ partial,
                                                                                const int* __restrict__ compressed,
                                                                                float* __restrict__ S, int Hp, int Nc,
                                                                                int splits) {
  const int b = blockIdx.y;
  const size_t plane = static_cast<size_t>(Nc) * Hp;  // floats per split
  const size_t i = (static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x) * 4;
  if (i >= plane) return;
  const int N = compressed[b];
  const int per = run_length(N, splits);
  const int used = N == 0 ? 0 : (N + per - 1) / per;
  const float* p = partial + static_cast<size_t>(b) * splits * plane + i;
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
  int s = 0;
  for (; s + 4 <= used; s += 4) {  // four loads in flight
    float4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = *reinterpret_cast<const float4*>(p + (s + u) * plane);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      sum.x += v[u].x;
      sum.y += v[u].y;
      sum.z += v[u].z;
      sum.w += v[u].w;
    }
  }
  for (; s < used; ++s) {
    const float4 v = *reinterpret_cast<const float4*>(p + s * plane);
    sum.x += v.x;
    sum.y += v.y;
    sum.z += v.z;
    sum.w += v.w;
  }
  *reinterpret_cast<float4*>(S + static_cast<size_t>(b) * plane + i) = sum;
}
