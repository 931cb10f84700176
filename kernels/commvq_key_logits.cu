// commvq_key_logits.cu — attention logits of one decoding query token over compressed keys, computed on the 12-bit
// codes and the codebook θ (spec §6.8), never on dequantized keys held in memory; batch B with per-sequence lengths.
//
// Math, sequence b, compressed token t (absolute position p_t = firstPos + t), kv head g, query head h of g's group,
// pair j < P = D_h/2 (HF rotate-half layout: q_j = q[j] + i·q[j + P]), code c_{r,t} = 64·A + B of stage r:
//   K_{t,j} = Σ_r (z_{r,j,A} + i·z_{r,j,B}),   z_{r,j,i} = X + iY = θ[r, g, 2i, j] + i·θ[r, g, 2i+1, j]
//   K′ = K·e^{iφ_{t,j}},  e^{iφ} read from the rotation table (commvq_attn_rotation.cu: sincosf(f32(p_t·invFreq_j)))
//   logit_t = n_t/√D_h · Σ_j Re[q_j · conj(K′_{t,j})] = n_t/√D_h · Σ_j (q[j]·Re K′ + q[j+P]·Im K′)
// This is the reference's U^A/U^B form (code-attention.ts `codeLogits`) with the product by q taken after the sum
// over stages instead of before (P_{r,j,i} = q_j·conj z_{r,j,i}): the gather of θ rows is then done once per kv head
// and shared by the G = H_q/H_kv query heads of its group — G times fewer table reads than per-query-head tables.
// The gather (2R rows × 16 bytes per lane and stage, through shared memory) is what bounds this kernel; the rotation
// comes from a table shared by all kv heads and layers instead of 64 sincosf per token and kv head (which cost about
// as many instructions as the gather itself). θ stays θ: no centre is ever expanded.
//
// Tensors:
//   q         [B, H_q·D_h]                    bf16  rotated queries
//   theta     [R, H_kv, 2·64, P]               f32   the layer's key codebook (LayerKeyCodebook.theta)
//   rot       [≥ maxN, P] float2               f32   (cos φ, sin φ) of token t (position firstPos + t), pair j
//   codes     [B, capacity, codeBytes] u8      12-bit codes, per token [R][H_kv] packed two per three bytes
//             (code k = r·H_kv + g occupies bits 12k .. 12k+11, little-endian); codeBytes = ceil(12·R·H_kv / 8)
//   norms     [B, capacity]                    bf16  n_t
//   compressed int32 [B]                             N_b, compressed tokens of sequence b (≤ capacity)
//   logits    [B, H_q, logitStride]            f32   out: logit_t for t < N_b
//   stats     [B, H_q, statStride] float2      f32   out: per chunk of `chunk` tokens (max logit, Σ exp(logit − max))
//
// Launch: grid (H_kv·headBlocks, ceil(maxN / chunk), B) — kv heads fastest, so that the CTAs of one chunk run together
//   and share its rotation rows in L2 — block 512 threads (16 warps), dynamic shared memory RS·16 KiB (θ of RS stages ×
//   32 pairs, f32) + GM·chunk·4 bytes (partial logits). Each CTA owns `chunk` tokens of one kv head and up to GM of its
//   query heads (GM ∈ {1, 2, 4, 8} is the template width; G > 8 uses several head blocks). θ is staged with cp.async
//   in phases of 32 pairs × RS stages; per phase every 8-lane group takes one token at a time: lane l8 holds pairs
//   4·l8 .. 4·l8+3 of the phase, reads the 16-byte slices of rows X_A, Y_A, X_B, Y_B (a quarter-warp reads 128
//   contiguous bytes: no bank conflicts), sums over stages, rotates, and dots with the heads' q kept in registers; the
//   8 lanes reduce by shuffles and add into the partial logits in shared memory. A token's codes and rotation are
//   loaded one token ahead.
// Accumulation: f32 throughout (θ rows, rotation, dot products, softmax statistics).
// Entry points: commvq_key_logits_g1, _g2, _g4, _g8.

#include <cuda_bf16.h>

#include "tensor_core.cuh"

namespace {

constexpr int kThreads = 512;
constexpr int kGroups = kThreads / 8;  // 8-lane groups: tokens in flight per CTA
constexpr int kPhasePairs = 32;        // pairs of θ held in shared memory at a time
constexpr int kRows = 128;             // 2·N_h rows of θ per stage (X_i, Y_i interleaved by row)
constexpr int kMaxPhaseStages = 16;    // stages per phase: a token's codes sit in two registers (c0, c1) of 8 lanes
static_assert(kMaxPhaseStages == 2 * 8, "loadNext keeps stages l8 and l8 + 8 of a phase");
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

template <int GM>
__device__ __forceinline__ void key_logits(const __nv_bfloat16* __restrict__ q, const float* __restrict__ theta,
                                           const float2* __restrict__ rot, const unsigned char* __restrict__ codes,
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
  const int codeBytes = (R * Hkv * 12 + 7) / 8;

  extern __shared__ __align__(16) unsigned char smem[];
  float* sTheta = reinterpret_cast<float*>(smem);                        // [RS][128 rows][32 pairs]
  float* sLog = sTheta + static_cast<size_t>(RS) * kRows * kPhasePairs;  // [GM][chunk] partial logits
  for (int i = threadIdx.x; i < GM * chunk; i += kThreads) sLog[i] = 0.f;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int grp = warp * 4 + (lane >> 3);
  const int l8 = lane & 7;
  const int grpBase = lane & ~7;
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
    // this lane's rotation slice of token t: 4 float2 = two 16-byte loads
    const float4* rotLane = reinterpret_cast<const float4*>(rot + static_cast<size_t>(t0) * P + j0 + 4 * l8);
    const int rotRow = P / 2;  // float4 per token row
    for (int r0 = 0; r0 < R; r0 += RS) {
      const int rs = min(RS, R - r0);
      __syncthreads();  // everyone is done with the previous phase's θ
      const int nChunks = rs * kRows * (kPhasePairs / 4);
      for (int i = threadIdx.x; i < nChunks; i += kThreads) {
        const int row = i >> 3;  // s·128 + row of θ_{r0+s, g}
        const int c = i & 7;
        const int s = row >> 7;
        const float* src = theta + ((static_cast<size_t>(r0 + s) * Hkv + g) * kRows + (row & 127)) * P + j0 + 4 * c;
        cp_async_16(smem_addr(sTheta + row * kPhasePairs + 4 * c), src);
      }
      cp_async_wait_all();
      __syncthreads();

      const float4* th = reinterpret_cast<const float4*>(sTheta);
      // the codes and rotation of the next token are loaded one iteration ahead (their global latency overlaps the
      // θ gather)
      auto loadNext = [&](int base, int& c0, int& c1, float4& ra, float4& rb) {
        const int tl = min(base + grp, nTok - 1);
        const unsigned char* tok = seqCodes + static_cast<size_t>(t0 + tl) * codeBytes;
        c0 = l8 < rs ? code12(tok, (r0 + l8) * Hkv + g) : 0;
        c1 = l8 + 8 < rs ? code12(tok, (r0 + l8 + 8) * Hkv + g) : 0;
        ra = rotLane[static_cast<size_t>(tl) * rotRow];
        rb = rotLane[static_cast<size_t>(tl) * rotRow + 1];
      };
      int n0, n1;
      float4 na, nb;
      loadNext(0, n0, n1, na, nb);
      for (int base = 0; base < nTok; base += kGroups) {
        const int c0 = n0, c1 = n1;
        const float4 ra = na, rb = nb;
        if (base + kGroups < nTok) loadNext(base + kGroups, n0, n1, na, nb);
        const int tl = base + grp;
        float kr[4] = {0.f, 0.f, 0.f, 0.f};
        float ki[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
        for (int s = 0; s < rs; ++s) {
          const int c = __shfl_sync(kFull, s < 8 ? c0 : c1, grpBase + (s & 7));
          const int A = c >> 6;
          const int Bc = c & 63;
          const float4* st = th + s * kRows * 8 + l8;
          const float4 xa = st[(2 * A) * 8];
          const float4 ya = st[(2 * A + 1) * 8];
          const float4 xb = st[(2 * Bc) * 8];
          const float4 yb = st[(2 * Bc + 1) * 8];
          // z_A + i·z_B = (X_A − Y_B) + i(Y_A + X_B)
          kr[0] += xa.x - yb.x; ki[0] += ya.x + xb.x;
          kr[1] += xa.y - yb.y; ki[1] += ya.y + xb.y;
          kr[2] += xa.z - yb.z; ki[2] += ya.z + xb.z;
          kr[3] += xa.w - yb.w; ki[3] += ya.w + xb.w;
        }
        // rotation is linear: with R > RS each phase of stages is rotated and dotted on its own and added up
        const float cs[4] = {ra.x, ra.z, rb.x, rb.z};
        const float sn[4] = {ra.y, ra.w, rb.y, rb.w};
        float part[GM];
#pragma unroll
        for (int h = 0; h < GM; ++h) part[h] = 0.f;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float re = kr[k] * cs[k] - ki[k] * sn[k];  // K·e^{iφ}
          const float im = kr[k] * sn[k] + ki[k] * cs[k];
#pragma unroll
          for (int h = 0; h < GM; ++h) part[h] += q1[h][k] * re + q2[h][k] * im;
        }
        float mine = 0.f;
#pragma unroll
        for (int h = 0; h < GM; ++h) {
          float v = part[h];
          v += __shfl_xor_sync(kFull, v, 4);
          v += __shfl_xor_sync(kFull, v, 2);
          v += __shfl_xor_sync(kFull, v, 1);
          if (l8 == h) mine = v;
        }
        if (tl < nTok && l8 < nHeads) sLog[l8 * chunk + tl] += mine;
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
  extern "C" __global__ void __launch_bounds__(kThreads, 1) commvq_key_logits_g##GM(                                 \
      const __nv_bfloat16* q, const float* theta, const float2* rot, const unsigned char* codes,                     \
      const __nv_bfloat16* norms, const int* compressed, float* logits, float2* stats, int Hq, int Hkv, int D, int R, \
      int RS, int capacity, int chunk, int logitStride, int statStride, float scale) {                              \
    key_logits<GM>(q, theta, rot, codes, norms, compressed, logits, stats, Hq, Hkv, D, R, RS, capacity, chunk,      \
                   logitStride, statStride, scale);                                                                 \
  }

COMMVQ_KEY_LOGITS(1)
COMMVQ_KEY_LOGITS(2)
COMMVQ_KEY_LOGITS(4)
COMMVQ_KEY_LOGITS(8)
