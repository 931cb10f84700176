// commvq_key_logits.cu — attention logits of one decoding query token over compressed keys, computed on the 12-bit
// codes and the codebook θ (spec §6.8), never on dequantized keys held in memory; batch B with per-sequence lengths.
//
// Math, sequence b, compressed token t (absolute position p_t = firstPos + t), kv head g, query head h of g's group,
// pair j < P = D_h/2 (HF rotate-half layout: q_j = q[j] + i·q[j + P]), code c_{r,t} = 64·A + B of stage r:
//   K_{t,j} = Σ_r (z_{r,j,A} + i·z_{r,j,B}),   z_{r,j,i} = X + iY = θ[r, g, 2i, j] + i·θ[r, g, 2i+1, j]
//   K′ = K·e^{iφ_{t,j}},  e^{iφ} read from the rotation table (commvq_attn_rotation.cu)
//   logit_t = n_t/√D_h · Σ_j Re[q_j · conj(K′_{t,j})] = n_t/√D_h · Σ_j (q[j]·Re K′ + q[j+P]·Im K′)
// The gather of θ rows is done once per kv head and shared by the G = H_q/H_kv query heads of its group. It is what
// bounds this kernel: 2R rows of z per token, read from shared memory (128 B per clock per SM), so their bytes set
// the speed. They are f16 (X, Y) pairs, 4 bytes a complex value instead of 8: θ rounded once to f16 (2^-11
// relative), far below the ~10% relative error 1-bit keys carry by design (test/gpu/commvq-attention.test.ts argues
// the bound, and checks it against the quantization error on trained codebooks).
//
// Number formats, in the order the sums are taken (a CPU twin in the test reproduces every f16 rounding):
//   z from θ_f16; U_A = Σ z_A and U_B = Σ z_B in f16 over runs of kHalfStages stages (each run starts from its first
//   term), each run then widened and added in f32: Re K += U_A.x − U_B.y, Im K += U_A.y + U_B.x; the rotation
//   (cos φ, sin φ) in f16; rotation, dot products with q (bf16 inputs), the reduction and softmax statistics in f32.
//
// Tensors:
//   q         [B, H_q·D_h]                     bf16   rotated queries
//   theta     [R, H_kv, 64, P] half2           f16    codeword i of stage r, group g at pair j: (X, Y) (θ's rows 2i,
//                                                     2i+1 interleaved; made from LayerKeyCodebook.theta on the host)
//   rot       [≥ maxN, P] half2                f16    (cos φ, sin φ) of token t (position firstPos + t), pair j
//   codes     [B, capacity, codeBytes] u8      12-bit codes, per token [R][H_kv] packed two per three bytes
//             (code k = r·H_kv + g occupies bits 12k .. 12k+11, little-endian); codeBytes = ceil(12·R·H_kv / 8)
//   norms     [B, capacity]                    bf16   n_t
//   compressed int32 [B]                              N_b, compressed tokens of sequence b (≤ capacity)
//   logits    [B, H_q, logitStride]            f32    out: logit_t for t < N_b
//   stats     [B, H_q, statStride] float2      f32    out: per chunk of `chunk` tokens (max logit, Σ exp(logit − max))
//
// Launch: grid (H_kv·headBlocks, ceil(maxN / chunk), B) — kv heads fastest, so that the CTAs of one chunk run together
//   and share its rotation rows in L2 — block 256 threads (8 warps), two CTAs per SM; dynamic shared memory
//   RS·8 KiB (θ of RS ≤ kMaxPhaseStages stages × 32 pairs, f16) + GM·chunk·4 bytes (partial logits). Each CTA owns
//   `chunk` tokens of one kv head and up to GM of its query heads (GM ∈ {1, 2, 4, 8} is the template width; G > 8 uses
//   several head blocks). Work is cut in phases of 32 pairs × RS stages (rotation and dot products are linear, so each
//   phase adds its part of every logit); θ of a phase is staged with cp.async. Per phase every 8-lane group takes one
//   token at a time: lane l8 holds pairs 4·l8 .. 4·l8+3 of the phase and reads the 16-byte slices of rows z_A and z_B
//   (a quarter-warp reads 128 contiguous bytes: no bank conflicts), sums over stages, rotates, and dots with the
//   heads' q kept in registers; the 8 lanes reduce the GM sums by halving exchanges (GM values in 7 shuffles or fewer)
//   and add into the partial logits in shared memory. A token's codes and rotation are loaded one token ahead.
// Entry points: commvq_key_logits_g1, _g2, _g4, _g8.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tensor_core.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kGroups = kThreads / 8;  // 8-lane groups: tokens in flight per CTA
constexpr int kPhasePairs = 32;        // pairs of θ per phase: 8 lanes × 4
constexpr int kCodewords = 64;         // z rows per stage (A and B index the same 64)
constexpr int kMaxPhaseStages = 16;    // stages per phase: a token's codes sit in two registers (c0, c1) of 8 lanes
static_assert(kMaxPhaseStages == 2 * 8, "loadNext keeps stages l8 and l8 + 8 of a phase");
constexpr int kHalfStages = 4;         // stages summed in f16 before the f32 accumulators take the run
constexpr u32 kFull = 0xffffffffu;

__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

// The 12-bit code k of one token's packed codes.
__device__ __forceinline__ int code12(const unsigned char* tok, int k) {
  const int bit = 12 * k;
  const int by = bit >> 3;
  const u32 v = static_cast<u32>(tok[by]) | (static_cast<u32>(tok[by + 1]) << 8);
  return static_cast<int>((v >> (bit & 7)) & 0xfffu);
}

__device__ __forceinline__ __half2 as_half2(u32 x) { return *reinterpret_cast<__half2*>(&x); }

__device__ __forceinline__ void add4(__half2 (&acc)[4], uint4 z) {
  acc[0] = __hadd2(acc[0], as_half2(z.x));
  acc[1] = __hadd2(acc[1], as_half2(z.y));
  acc[2] = __hadd2(acc[2], as_half2(z.z));
  acc[3] = __hadd2(acc[3], as_half2(z.w));
}

// Sums v over the 8 lanes of a group; lane l8 ends with the sum of head l8 / (8 / GM) (in the first slot). Each
// exchange halves the values a lane holds: the lane with the mask bit set keeps the upper half.
template <int GM>
__device__ __forceinline__ float reduce_heads(float (&v)[GM], int l8) {
#pragma unroll
  for (int m = 0; m < 3; ++m) {
    const int mask = 4 >> m;
    const int n = (GM >> m) > 1 ? (GM >> m) : 1;  // values each lane holds before this exchange
    if (n == 1) {
      v[0] += __shfl_xor_sync(kFull, v[0], mask);
    } else {
      const bool upper = (l8 & mask) != 0;
#pragma unroll
      for (int i = 0; i < n / 2; ++i) {
        const float send = upper ? v[i] : v[i + n / 2];
        const float keep = upper ? v[i + n / 2] : v[i];
        v[i] = keep + __shfl_xor_sync(kFull, send, mask);
      }
    }
  }
  return v[0];
}

template <int GM>
__device__ __forceinline__ void key_logits(const __nv_bfloat16* __restrict__ q, const uint4* __restrict__ theta,
                                           const uint4* __restrict__ rot, const unsigned char* __restrict__ codes,
                                           const __nv_bfloat16* __restrict__ norms, const int* __restrict__ compressed,
                                           float* __restrict__ logits, float2* __restrict__ stats, int Hq, int Hkv,
                                           int D, int R, int RS, int capacity, int chunk, int logitStride,
                                           int statStride, float scale) {
  const int b = blockIdx.z;
  const int G = Hq / Hkv;
  const int headBlocks = (G + GM - 1) / GM;
  const int g = blockIdx.x / headBlocks;
  const int hb = blockIdx.x % headBlocks;
  const int nHeads = min(GM, G - hb * GM);
  const int h0 = g * G + hb * GM;
  const int N = compressed[b];
  const int t0 = blockIdx.y * chunk;
  if (t0 >= N) return;  // grid sized for the longest sequence
  const int nTok = min(chunk, N - t0);
  const int P = D / 2;
  const int rowChunks = P / 4;  // uint4 per θ row and per rotation row (4 half2 each)
  const int codeBytes = (R * Hkv * 12 + 7) / 8;

  extern __shared__ __align__(16) unsigned char smem[];
  uint4* sTheta = reinterpret_cast<uint4*>(smem);                               // [RS][64 codewords][8] of 4 half2
  float* sLog = reinterpret_cast<float*>(sTheta + RS * kCodewords * (kPhasePairs / 4));  // [GM][chunk]
  for (int i = threadIdx.x; i < GM * chunk; i += kThreads) sLog[i] = 0.f;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int grp = warp * 4 + (lane >> 3);
  const int l8 = lane & 7;
  const int grpBase = lane & ~7;
  const int writerMask = 8 / GM - 1;  // lanes l8 with these bits clear write the sum of head l8 / (8 / GM)
  const unsigned char* seqCodes = codes + static_cast<size_t>(b) * capacity * codeBytes;
  const __nv_bfloat16* qb = q + static_cast<size_t>(b) * Hq * D;

  for (int j0 = 0; j0 < P; j0 += kPhasePairs) {
    // this lane's 4 pairs j0 + 4·l8 + k: q of each head in registers
    float q1[GM][4], q2[GM][4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int j = j0 + 4 * l8 + k;
#pragma unroll
      for (int h = 0; h < GM; ++h) {
        const bool ok = h < nHeads;
        const __nv_bfloat16* qh = qb + static_cast<size_t>(h0 + (ok ? h : 0)) * D;
        q1[h][k] = ok ? __bfloat162float(qh[j]) : 0.f;
        q2[h][k] = ok ? __bfloat162float(qh[j + P]) : 0.f;
      }
    }
    const uint4* rotLane = rot + static_cast<size_t>(t0) * rowChunks + j0 / 4 + l8;  // token t0's slice of this lane
    for (int r0 = 0; r0 < R; r0 += RS) {
      const int rs = min(RS, R - r0);
      __syncthreads();  // everyone is done with the previous phase's θ
      const int nChunks = rs * kCodewords * (kPhasePairs / 4);
      for (int i = threadIdx.x; i < nChunks; i += kThreads) {
        const int row = i >> 3;  // s·64 + codeword of stage r0 + s
        const int c = i & 7;
        const int s = row / kCodewords;
        const uint4* src = theta + ((static_cast<size_t>(r0 + s) * Hkv + g) * kCodewords + row % kCodewords) * rowChunks +
                           j0 / 4 + c;
        cp_async_16(smem_addr(sTheta + i), src);
      }
      cp_async_wait_all();
      __syncthreads();

      // the codes and rotation of the next token are loaded one iteration ahead (their global latency overlaps the
      // θ gather)
      auto loadNext = [&](int base, int& c0, int& c1, uint4& ra) {
        const int tl = min(base + grp, nTok - 1);
        const unsigned char* tok = seqCodes + static_cast<size_t>(t0 + tl) * codeBytes;
        c0 = l8 < rs ? code12(tok, (r0 + l8) * Hkv + g) : 0;
        c1 = l8 + 8 < rs ? code12(tok, (r0 + l8 + 8) * Hkv + g) : 0;
        ra = rotLane[static_cast<size_t>(tl) * rowChunks];
      };
      int n0, n1;
      uint4 nr;
      loadNext(0, n0, n1, nr);
      for (int base = 0; base < nTok; base += kGroups) {
        const int c0 = n0, c1 = n1;
        const uint4 ra = nr;
        if (base + kGroups < nTok) loadNext(base + kGroups, n0, n1, nr);
        const int tl = base + grp;
        float kr[4] = {0.f, 0.f, 0.f, 0.f};
        float ki[4] = {0.f, 0.f, 0.f, 0.f};
        for (int s0 = 0; s0 < rs; s0 += kHalfStages) {
          __half2 ua[4], ub[4];
#pragma unroll
          for (int k = 0; k < 4; ++k) ua[k] = ub[k] = __float2half2_rn(0.f);
#pragma unroll
          for (int u = 0; u < kHalfStages; ++u) {
            const int s = s0 + u;
            if (s < rs) {  // uniform over the warp
              const int c = __shfl_sync(kFull, s < 8 ? c0 : c1, grpBase + (s & 7));
              const uint4* st = sTheta + s * kCodewords * 8 + l8;
              add4(ua, st[(c >> 6) * 8]);
              add4(ub, st[(c & 63) * 8]);
            }
          }
#pragma unroll
          for (int k = 0; k < 4; ++k) {  // z_A + i·z_B = (X_A − Y_B) + i(Y_A + X_B)
            const float2 a = __half22float2(ua[k]);
            const float2 bz = __half22float2(ub[k]);
            kr[k] += a.x - bz.y;
            ki[k] += a.y + bz.x;
          }
        }
        // rotation is linear: each phase is rotated and dotted on its own and added up
        const u32 rw[4] = {ra.x, ra.y, ra.z, ra.w};
        float part[GM];
#pragma unroll
        for (int h = 0; h < GM; ++h) part[h] = 0.f;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float2 cs = __half22float2(as_half2(rw[k]));  // (cos φ, sin φ)
          const float re = kr[k] * cs.x - ki[k] * cs.y;       // K·e^{iφ}
          const float im = kr[k] * cs.y + ki[k] * cs.x;
#pragma unroll
          for (int h = 0; h < GM; ++h) part[h] += q1[h][k] * re + q2[h][k] * im;
        }
        const float sum = reduce_heads<GM>(part, l8);
        const int head = l8 / (writerMask + 1);
        if (tl < nTok && (l8 & writerMask) == 0 && head < nHeads) sLog[head * chunk + tl] += sum;
      }
    }
  }
  __syncthreads();

  // final logits and this chunk's softmax statistics, one warp per head
  if (warp < nHeads) {
    const int hq = h0 + warp;
    float* sl = sLog + warp * chunk;
    float* out = logits + (static_cast<size_t>(b) * Hq + hq) * logitStride + t0;
    const __nv_bfloat16* nb = norms + static_cast<size_t>(b) * capacity + t0;
    float m = neg_inf();
    for (int tl = lane; tl < nTok; tl += 32) {
      const float l = sl[tl] * __bfloat162float(nb[tl]) * scale;
      sl[tl] = l;
      out[tl] = l;
      m = fmaxf(m, l);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, o));
    float sum = 0.f;
    for (int tl = lane; tl < nTok; tl += 32) sum += expf(sl[tl] - m);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
    if (lane == 0) stats[(static_cast<size_t>(b) * Hq + hq) * statStride + blockIdx.y] = make_float2(m, sum);
  }
}

}  // namespace

#define COMMVQ_KEY_LOGITS(GM)                                                                                        \
  extern "C" __global__ void __launch_bounds__(kThreads, 2) commvq_key_logits_g##GM(                                 \
      const __nv_bfloat16* q, const uint4* theta, const uint4* rot, const unsigned char* codes,                      \
      const __nv_bfloat16* norms, const int* compressed, float* logits, float2* stats, int Hq, int Hkv, int D, int R, \
      int RS, int capacity, int chunk, int logitStride, int statStride, float scale) {                              \
    key_logits<GM>(q, theta, rot, codes, norms, compressed, logits, stats, Hq, Hkv, D, R, RS, capacity, chunk,      \
                   logitStride, statStride, scale);                                                                 \
  }

COMMVQ_KEY_LOGITS(1)
COMMVQ_KEY_LOGITS(2)
COMMVQ_KEY_LOGITS(4)
COMMVQ_KEY_LOGITS(8)
