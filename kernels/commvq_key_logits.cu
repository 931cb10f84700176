// commvq_key_logits.cu — attention logits of one decoding query token over compressed keys, computed on the 12-bit
// codes and the codebook θ (spec §6.8), never on dequantized keys held in memory; batch B with per-sequence lengths.
//
// Math, sequence b, compressed token t (absolute position p_t = firstPos + t), kv head g, query head h of g's group,
// pair j < P = D_h/2 (HF rotate-half layout: q_j = q[j] + i·q[j + P]), code c_{r,t} = 64·A + B of stage r:
//   K_{t,j} = Σ_r (z_{r,j,A} + i·z_{r,j,B}),   z_{r,j,i} = X + iY = θ[r, g, 2i, j] + i·θ[r, g, 2i+1, j]
//   K′ = K·e^{iφ_{t,j}},  e^{iφ} read from the rotation table (commvq_attn_rotation.cu: sincosf(f32(p_t·invFreq_j)))
//   logit_t = n_t/√D_h · Σ_j Re[q_j · conj(K′_{t,j})] = n_t/√D_h · Σ_j (q[j]·Re K′ + q[j+P]·Im K′)
// The gather of θ rows is done once per kv head and shared by the G = H_q/H_kv query heads of its group.
//
// Number formats. θ is held in f16 (X, Y per pair; 4 bytes a complex value, half of f32): the gather through shared
// memory is what bounds this kernel, so its bytes are its time. f16 rounds each θ term by ≤ 2^-11 relative. With an
// odd R the last step has a free slot; it holds stage 0's remainder θ − f16(θ) (in f16, read with stage 0's codes),
// so the largest stage is carried to ~2^-22 at no cost. On codebooks trained by the pipeline the rounding then moves
// the logits by ~0.5% of the method's own quantization error at 1 and 2 bits (test/gpu/commvq-attention.test.ts holds
// it under 1%). Everything after the gather is f32: the sums over stages (tensor cores, f32 accumulate: each product
// is a θ term times 1.0, exact), the rotation table, the dot with q, the softmax statistics.
//
// The stage sum on tensor cores. One ldmatrix.x4 gathers four 128-byte θ rows of a token — stage s row A, stage s
// row B, stage s+1 row A, stage s+1 row B, each 32 pairs × (X, Y) f16 — straight into the A fragment of an m16n8k16
// MMA (fragment row m < 8 = 16-byte chunk m of the A rows, m ≥ 8 the B rows; columns = the chunk's 8 halves, stages
// s and s+1 side by side). Multiplying by two stacked 8×8 identities adds stage s+1 to stage s and leaves lane
// l = 4g + c holding, for pair l of the phase, the running (ΣX_A, ΣY_A) in d0, d1 and (ΣX_B, ΣY_B) in d2, d3:
//   Re K = ΣX_A − ΣY_B = d0 − d3,   Im K = ΣY_A + ΣX_B = d1 + d2.
// So a token costs ⌈R/2⌉ ldmatrix + ⌈R/2⌉ MMA per phase of 32 pairs instead of 4R loads, 4R conversions and 4R adds
// per lane. Each 8-lane address group of an ldmatrix reads one 128-byte row:
// no bank conflicts whatever the codes.
//
// Tensors:
//   q         [B, H_q·D_h]                    bf16  rotated queries
//   theta     [S, H_kv, 64, P, 2]             f16   θ as (X_i, Y_i) per codeword i and pair, stages 0 .. R−1 then
//                                                   S − R remainder stages (of stages 0 .. S−R−1); attentionTheta
//                                                   in code-attention.ts
//   rot       [≥ maxN, P] float2               f32   (cos φ, sin φ) of token t (position firstPos + t), pair j
//   codes     [B, capacity, codeBytes] u8      12-bit codes, per token [R][H_kv] packed two per three bytes
//             (code k = r·H_kv + g occupies bits 12k .. 12k+11, little-endian); codeBytes = ceil(12·R·H_kv / 8)
//   norms     [B, capacity]                    bf16  n_t
//   compressed int32 [B]                             N_b, compressed tokens of sequence b (≤ capacity)
//   logits    [B, H_q, logitStride]            f32   out: logit_t for t < N_b (between phases: partial sums)
//   stats     [B, H_q, statStride] float2      f32   out: per chunk of kChunk tokens (max logit, Σ exp(logit − max))
//
// Launch: grid (H_kv·headBlocks, slices, B), block kThreads (16 warps), dynamic shared memory
//   (64·S + 1)·PH·kPhaseBytes (θ of PH phases of 32 pairs, all S stages, and a zero row that an odd S's last step
//   reads) + kChunk·codeRow (the chunk's codes, one byte per matrix and step: codeRow = 4·stepsPad, stepsPad = ⌈S/2⌉
//   rounded up to 4) + GM·kChunk·4 (logits). A CTA owns one kv head, up to GM of its query heads (GM ∈ {1, 2, 4, 8},
//   the template width; G > 8 uses several head blocks) and chunks y, y + slices, … of kChunk tokens of sequence b.
//   PH (template, 1 or 2) is how many of the P/32 phases of pairs are resident at once: with PH = P/32 (D_h 64, or
//   D_h 128 at R ≤ 11, where both phases' θ fit: 256-byte rows, the second phase's ldmatrix at +128 bytes) a token's
//   codes are unpacked and its address formed once for all pairs, both phases' dots are summed before one butterfly
//   and each logit is written once; otherwise (D_h 128 at larger R) the CTA makes P/32/PH passes, staging each pass's
//   θ once, and sums partial logits through `logits`. Per chunk the codes are unpacked into shared memory (a thread a
//   token, four u32 per matrix row, no division) as the bytes each lane feeds ldmatrix; a warp takes kTok tokens at a
//   time (kTok·PH independent MMA chains), rotates and dots in registers, and reduces its kTok·GM logits across the 32
//   lanes by a halving butterfly. The last pass scales by n_t/√D_h and writes the chunk's softmax statistics.
// Entry points: commvq_key_logits_g{1,2,4,8}_p{1,2}.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tensor_core.cuh"

namespace {

constexpr int kThreads = 512;          // 16 warps: θ fills most of an SM's shared memory, so one CTA per SM
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 512;            // tokens per statistics entry and per pass of a CTA
constexpr int kPhasePairs = 32;        // pairs per phase: lane l holds pair l
constexpr int kPhaseBytes = kPhasePairs * 4;  // one θ row of a phase: 32 pairs × (X, Y) f16
constexpr u32 kFull = 0xffffffffu;

// The 12-bit code k of one token's packed codes.
__device__ __forceinline__ int code12(const unsigned char* tok, int k) {
  const int bit = 12 * k;
  const int by = bit >> 3;
  const u32 v = static_cast<u32>(tok[by]) | (static_cast<u32>(tok[by + 1]) << 8);
  return static_cast<int>((v >> (bit & 7)) & 0xfffu);
}

// Sums V values over the warp's 32 lanes, each lane's V at once: a halving butterfly. Each step at lane distance OFF
// keeps the half of the values that the lane's bit OFF selects and adds the partner's copy of it, so after log2 V
// halving steps (and plain sums for the remaining distances) every lane holds the total of value index
// lane >> (5 − log2 V); all lanes that share those top bits hold the same total.
template <int V, int OFF>
__device__ __forceinline__ float butterfly_sum(const float (&v)[V], int lane) {
  static_assert(V >= 1 && V <= 2 * OFF + (OFF == 0) && (V & (V - 1)) == 0, "V: a power of two ≤ 32");
  if constexpr (OFF == 0) {
    return v[0];
  } else if constexpr (V == 1) {
    const float w[1] = {v[0] + __shfl_xor_sync(kFull, v[0], OFF)};
    return butterfly_sum<1, OFF / 2>(w, lane);
  } else {
    constexpr int H = V / 2;
    const bool upper = (lane & OFF) != 0;
    float w[H];
#pragma unroll
    for (int i = 0; i < H; ++i) {
      const float send = upper ? v[i] : v[i + H];
      const float keep = upper ? v[i + H] : v[i];
      w[i] = keep + __shfl_xor_sync(kFull, send, OFF);
    }
    return butterfly_sum<H, OFF / 2>(w, lane);
  }
}

template <int V>
struct Log2 {
  static constexpr int value = V <= 1 ? 0 : 1 + Log2<V / 2>::value;
};
template <>
struct Log2<1> {
  static constexpr int value = 0;
};

// Unpacks one token's codes of kv head g into its shared-memory row: matrix m = 2·(stage parity) + half (A = code >> 6,
// B = code & 63) at bytes m·stepsPad + step. Stage r ≥ R is the remainder of stage r − R (same code); a missing stage
// (r = S, odd S) reads code 0, the zero row. Four steps at a time: their bytes are gathered into one u32 per matrix in
// registers and stored a word at a time. S − R ≤ 1 (attentionStages), so a remainder stage is always stage 0's.
__device__ __forceinline__ void unpack_token(const unsigned char* tok, unsigned char* row, int g, int Hkv, int R, int S,
                                             int steps, int stepsPad) {
  u32 code0 = 0u;
  for (int k0 = 0; k0 < steps; k0 += 4) {
    u32 w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int par = 0; par < 2; ++par) {
        const int r = 2 * (k0 + kk) + par;
        const u32 code = r < R ? static_cast<u32>(code12(tok, r * Hkv + g)) : r < S ? code0 : 0u;
        if (r == 0) code0 = code;
        w[2 * par] |= (code >> 6) << (8 * kk);
        w[2 * par + 1] |= (code & 63u) << (8 * kk);
      }
    }
#pragma unroll
    for (int mm = 0; mm < 4; ++mm) *reinterpret_cast<u32*>(row + mm * stepsPad + k0) = w[mm];
  }
}

template <int GM, int PH>
__device__ __forceinline__ void key_logits(const __nv_bfloat16* __restrict__ q, const __half* __restrict__ theta,
                                           const float2* __restrict__ rot, const unsigned char* __restrict__ codes,
                                           const __nv_bfloat16* __restrict__ norms, const int* __restrict__ compressed,
                                           float* __restrict__ logits, float2* __restrict__ stats, int Hq, int Hkv,
                                           int D, int R, int S, int capacity, int logitStride, int statStride,
                                           float scale) {
  constexpr int kTok = 4 / PH;                 // tokens in flight per warp: kTok·PH independent MMA chains
  constexpr int kRowBytes = PH * kPhaseBytes;  // one resident θ row: PH phases of 32 pairs
  constexpr int V = kTok * GM;
  constexpr int kShift = 5 - Log2<V>::value;  // lanes 2^kShift apart hold different values after the butterfly
  const int b = blockIdx.z;
  const int G = Hq / Hkv;
  const int headBlocks = (G + GM - 1) / GM;
  const int g = blockIdx.x / headBlocks;
  const int hb = blockIdx.x % headBlocks;
  const int nHeads = min(GM, G - hb * GM);
  const int h0 = g * G + hb * GM;
  const int N = compressed[b];
  if (static_cast<int>(blockIdx.y) * kChunk >= N) return;  // grid sized for the longest sequence
  const int P = D / 2;
  const int passes = P / (kPhasePairs * PH);
  const int steps = (S + 1) / 2;  // ldmatrix.x4 + MMA per token and phase: two stages each
  const int stepsPad = (steps + 3) & ~3;
  const int codeRow = 4 * stepsPad;
  const int codeBytes = (R * Hkv * 12 + 7) / 8;

  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* sTheta = smem;                                                  // [64·S + 1 rows][kRowBytes]
  unsigned char* sCodes = sTheta + static_cast<size_t>(64 * S + 1) * kRowBytes;  // [kChunk][codeRow]
  float* sLog = reinterpret_cast<float*>(sCodes + kChunk * codeRow);             // [GM][kChunk]

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int m = lane >> 3;  // the ldmatrix matrix this lane addresses: (stage parity m >> 1, half m & 1)
  const unsigned char* seqCodes = codes + static_cast<size_t>(b) * capacity * codeBytes;
  const __nv_bfloat16* qb = q + static_cast<size_t>(b) * Hq * D;

  // the zero row that an odd S's last step reads (row 64·S, code 0 of the missing stage S)
  for (int i = threadIdx.x; i < kRowBytes / 16; i += kThreads) {
    reinterpret_cast<uint4*>(sTheta + static_cast<size_t>(64 * S) * kRowBytes)[i] = make_uint4(0, 0, 0, 0);
  }
  // B fragment of two stacked 8×8 identities: b[k][n] = (k mod 8 == n); lane (g8, c) holds rows 2c, 2c+1 of col g8
  const int g8 = lane >> 2;
  const int c4 = lane & 3;
  const u32 ident = (2 * c4 == g8 ? 0x3C00u : 0u) | (2 * c4 + 1 == g8 ? 0x3C000000u : 0u);
  const u32 laneBase = smem_addr(sTheta) + static_cast<u32>((m >> 1) * 64 * kRowBytes + (lane & 7) * 16);

  for (int pass = 0; pass < passes; ++pass) {
    const int j0 = pass * PH * kPhasePairs;  // first pair of the pass; lane holds pairs j0 + 32·ph + lane
    const bool last = pass == passes - 1;
    __syncthreads();  // everyone is done with the previous pass's θ
    for (int i = threadIdx.x; i < 64 * S * (kRowBytes / 16); i += kThreads) {
      const int row = i / (kRowBytes / 16);  // r·64 + codeword
      const int ch = i % (kRowBytes / 16);
      const int r = row >> 6;
      const __half* src = theta + ((static_cast<size_t>(r) * Hkv + g) * 64 + (row & 63)) * P * 2 + j0 * 2 + ch * 8;
      cp_async_16(smem_addr(sTheta + static_cast<size_t>(row) * kRowBytes + ch * 16), src);
    }
    cp_async_commit();
    // this lane's pairs j0 + 32·ph + lane: q of each head in registers
    float q1[PH][GM], q2[PH][GM];
#pragma unroll
    for (int ph = 0; ph < PH; ++ph) {
#pragma unroll
      for (int h = 0; h < GM; ++h) {
        const bool ok = h < nHeads;
        const __nv_bfloat16* qh = qb + static_cast<size_t>(h0 + (ok ? h : 0)) * D + j0 + ph * kPhasePairs + lane;
        q1[ph][h] = ok ? __bfloat162float(qh[0]) : 0.f;
        q2[ph][h] = ok ? __bfloat162float(qh[P]) : 0.f;
      }
    }
    cp_async_wait<0>();

    for (int t0 = blockIdx.y * kChunk; t0 < N; t0 += gridDim.y * kChunk) {
      const int nTok = min(kChunk, N - t0);
      __syncthreads();  // θ landed (first chunk); the previous chunk is done with the codes and logits
      for (int tl = threadIdx.x; tl < nTok; tl += kThreads) {
        unpack_token(seqCodes + static_cast<size_t>(t0 + tl) * codeBytes, sCodes + tl * codeRow, g, Hkv, R, S, steps, stepsPad);
      }
      __syncthreads();

      for (int base = warp * kTok; base < nTok; base += kWarps * kTok) {
        int tl[kTok];
        float2 e[kTok][PH];
#pragma unroll
        for (int u = 0; u < kTok; ++u) {
          tl[u] = min(base + u, nTok - 1);
#pragma unroll
          for (int ph = 0; ph < PH; ++ph) e[u][ph] = rot[static_cast<size_t>(t0 + tl[u]) * P + j0 + ph * kPhasePairs + lane];
        }
        float acc[kTok][PH][4];
#pragma unroll
        for (int u = 0; u < kTok; ++u) {
#pragma unroll
          for (int ph = 0; ph < PH; ++ph) acc[u][ph][0] = acc[u][ph][1] = acc[u][ph][2] = acc[u][ph][3] = 0.f;
        }
        for (int k0 = 0; k0 < steps; k0 += 4) {
          u32 w[kTok];
#pragma unroll
          for (int u = 0; u < kTok; ++u) w[u] = reinterpret_cast<const u32*>(sCodes + tl[u] * codeRow + m * stepsPad + k0)[0];
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            if (k0 + kk < steps) {
              const u32 stepBase = laneBase + static_cast<u32>((k0 + kk) * 2 * 64 * kRowBytes);
#pragma unroll
              for (int u = 0; u < kTok; ++u) {
                const u32 at = stepBase + ((w[u] >> (8 * kk)) & 0xffu) * kRowBytes;
                u32 a0, a1, a2, a3;
                ldmatrix_x4_at<0>(at, a0, a1, a2, a3);
                mma_f16_f32(acc[u][0], a0, a1, a2, a3, ident, ident);
                if constexpr (PH == 2) {
                  ldmatrix_x4_at<kPhaseBytes>(at, a0, a1, a2, a3);
                  mma_f16_f32(acc[u][1], a0, a1, a2, a3, ident, ident);
                }
              }
            }
          }
        }
        float v[V];
#pragma unroll
        for (int u = 0; u < kTok; ++u) {
#pragma unroll
          for (int h = 0; h < GM; ++h) v[u * GM + h] = 0.f;
#pragma unroll
          for (int ph = 0; ph < PH; ++ph) {
            const float re = acc[u][ph][0] - acc[u][ph][3];
            const float im = acc[u][ph][1] + acc[u][ph][2];
            const float kr = re * e[u][ph].x - im * e[u][ph].y;  // K·e^{iφ}
            const float ki = re * e[u][ph].y + im * e[u][ph].x;
#pragma unroll
            for (int h = 0; h < GM; ++h) v[u * GM + h] += q1[ph][h] * kr + q2[ph][h] * ki;
          }
        }
        const float sum = butterfly_sum<V, 16>(v, lane);
        const int idx = lane >> kShift;
        const int u = idx / GM;
        const int h = idx % GM;
        if ((lane & ((1 << kShift) - 1)) == 0 && base + u < nTok && h < nHeads) sLog[h * kChunk + base + u] = sum;
      }
      __syncthreads();

      // logits (partial sums between passes) into `logits`; the last pass scales them and writes the chunk's
      // statistics, one warp a head
      const __nv_bfloat16* nb = norms + static_cast<size_t>(b) * capacity + t0;
      for (int hh = warp; hh < nHeads; hh += kWarps) {
        float* out = logits + (static_cast<size_t>(b) * Hq + h0 + hh) * logitStride + t0;
        const float* sl = sLog + hh * kChunk;
        float mx = neg_inf();
        for (int t = lane; t < nTok; t += 32) {
          float l = sl[t] + (pass > 0 ? out[t] : 0.f);
          if (last) {
            l *= __bfloat162float(nb[t]) * scale;
            mx = fmaxf(mx, l);
          }
          out[t] = l;
        }
        if (!last) continue;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
        float s = 0.f;
        for (int t = lane; t < nTok; t += 32) s += expf(out[t] - mx);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(kFull, s, o);
        if (lane == 0) stats[(static_cast<size_t>(b) * Hq + h0 + hh) * statStride + t0 / kChunk] = make_float2(mx, s);
      }
    }
  }
}

}  // namespace

#define COMMVQ_KEY_LOGITS(GM, PH)                                                                                    \
  extern "C" __global__ void __launch_bounds__(kThreads, 1) commvq_key_logits_g##GM##_p##PH(                         \
      const __nv_bfloat16* q, const __half* theta, const float2* rot, const unsigned char* codes,                   \
      const __nv_bfloat16* norms, const int* compressed, float* logits, float2* stats, int Hq, int Hkv, int D, int R, \
      int S, int capacity, int logitStride, int statStride, float scale) {                                          \
    key_logits<GM, PH>(q, theta, rot, codes, norms, compressed, logits, stats, Hq, Hkv, D, R, S, capacity,         \
                       logitStride, statStride, scale);                                                             \
  }

COMMVQ_KEY_LOGITS(1, 1)
COMMVQ_KEY_LOGITS(2, 1)
COMMVQ_KEY_LOGITS(4, 1)
COMMVQ_KEY_LOGITS(8, 1)
COMMVQ_KEY_LOGITS(1, 2)
COMMVQ_KEY_LOGITS(2, 2)
COMMVQ_KEY_LOGITS(4, 2)
COMMVQ_KEY_LOGITS(8, 2)
