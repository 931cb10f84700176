// peer_attention_decode.cu — one decode token's attention over a quantized peer cache (int4/int2, fp8, KIVI) with the
// dequantization fused into the reads: no bf16 copy of the cache is ever made. Split over the keys
// ("flash-decoding") like attention_decode.cu, whose combine kernel merges the partials this kernel writes.
//
// Math, for query head h (kv head g = h / G, G = H_q / H_kv) and the n keys j = 0 .. n − 1 of one sequence:
//   k̂_j = dequant(key codes)  for j < kQuantized, else the exact key row at slot (j − kExactBase) [mod kExactMod]
//   v̂_j likewise with the value part's own split (KIVI keeps different key and value tails);
//   s_j = (q_h · k̂_j) / sqrt(D_h),  out_h = Σ_j softmax(s)_j · v̂_j.
// Dequantization, each in f32 as its CPU reference (affine-groups.ts, fp8-e4m3.ts): affine x̂ = fma(q, s′, z′) with
// s′, z′ f16; fp8 x̂ = e4m3(q)·s, e4m3 widened through f16 (code bits shifted into an f16 is the value · 2^-8, so
// one product with s·256 rounds once, exactly as e4m3·s does).
//
// Tensors (W = H_kv·D_h; layouts of peer_formats.cuh, rows are token positions):
//   q        [1, H_q·D_h]           bf16   the decode token's RoPE-rotated query
//   k part   codes u8 [≥kQuantized, W·bits/8]; scales/zeros per the key layout (token: f16 [·, W/group], group ≥ 32;
//            channel: f16 [·/group, W]; fp8: f32 scales [·, H_kv]); exact bf16 [slots, W]
//   v part   token layout (affine caches) or fp8, likewise
//   partO    [H_kv, nUnits, G, D_h]   f32    per-unit unnormalized outputs (attention_decode.cu's layout, Tq = 1)
//   partML   [H_kv, nUnits, G] float2 f32    per-unit (m in the log2 domain, l)
// Launch: grid (ceil(nUnits / 4), H_kv), block 128 (4 warps, one unit of `unitKeys` keys each, unitKeys a multiple of
//   32). Scores: a lane per key (32 keys per pass), the key's whole head row dequantized from registers and dotted
//   with q read from shared memory (all of a channel's query heads in one 16-byte load). Values: a lane per D_h/32
//   channels, the pass's 32 probabilities read from shared memory. Then attention_decode_combine_d{64,128}(partO,
//   partML, out, 1, H_q, H_kv, n − 1, n, unitKeys, nUnits, null).
// Accumulation: f32 throughout (scores, online softmax, Σ p·v̂); probabilities are not rounded to bf16.
// Entry points: peer_decode_{int4,int2,kivi2,kivi1,fp8}_d{64,128}_g{4,8} (g: the largest G the launch serves).

#include "peer_formats.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Four e4m3 codes of a 32-bit word as floats, each times 2^-8 (see the header).
__device__ __forceinline__ void e4m3x4(unsigned int w, float out[4]) {
  const unsigned int lo = ((w & 0x80u) << 8) | ((w & 0x7fu) << 7) | ((w & 0x8000u) << 16) | ((w & 0x7f00u) << 15);
  const unsigned int hi = ((w & 0x800000u) >> 8) | ((w & 0x7f0000u) >> 9) | (w & 0x80000000u) | ((w & 0x7f000000u) >> 1);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&lo));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&hi));
  out[0] = a.x;
  out[1] = a.y;
  out[2] = b.x;
  out[3] = b.y;
}

struct Part {
  const unsigned char* codes;
  const void* scales;
  const __half* zeros;
  int groupShift;
  int quantized;
  const __nv_bfloat16* exact;
  int exactBase;
  int exactMod;
  __device__ __forceinline__ const __nv_bfloat16* exactRow(int j, int W) const {
    const int slot = exactMod > 0 ? (j - exactBase) % exactMod : j - exactBase;
    return exact + static_cast<size_t>(slot) * W;
  }
};

// s[h] += q_h[d] · x for the GM heads (q transposed in shared memory: qs[d·GM + h]).
template <int GM>
__device__ __forceinline__ void dot_channel(const float* qs, int d, float x, float s[GM]) {
#pragma unroll
  for (int h4 = 0; h4 < GM / 4; ++h4) {
    const float4 qv = reinterpret_cast<const float4*>(qs + d * GM)[h4];
    s[4 * h4 + 0] = fmaf(qv.x, x, s[4 * h4 + 0]);
    s[4 * h4 + 1] = fmaf(qv.y, x, s[4 * h4 + 1]);
    s[4 * h4 + 2] = fmaf(qv.z, x, s[4 * h4 + 2]);
    s[4 * h4 + 3] = fmaf(qv.w, x, s[4 * h4 + 3]);
  }
}

// s[h] = q_h · k̂_j for key j (this lane's key).
template <int D, int KL, int BITS, int GM>
__device__ __forceinline__ void key_scores(const Part& k, int j, int hkv, int Hkv, const float* qs, float s[GM]) {
  const int W = Hkv * D;
  if (j >= k.quantized) {
    const __nv_bfloat16* row = k.exactRow(j, W) + hkv * D;
#pragma unroll
    for (int d8 = 0; d8 < D / 8; ++d8) {
      const bf16x8 x = load8(row + d8 * 8);
#pragma unroll
      for (int e = 0; e < 8; ++e) dot_channel<GM>(qs, d8 * 8 + e, bf2f(x.v[e]), s);
    }
    return;
  }
  constexpr int kWords = D * BITS / 32;
  constexpr unsigned int kMask = BITS == 32 ? 0xffffffffu : (1u << BITS) - 1u;
  unsigned int w[kWords];
  const uint2* codes = reinterpret_cast<const uint2*>(k.codes + static_cast<size_t>(j) * (W * BITS / 8) + hkv * (D * BITS / 8));
#pragma unroll
  for (int i = 0; i < kWords / 2; ++i) {
    const uint2 u = codes[i];
    w[2 * i] = u.x;
    w[2 * i + 1] = u.y;
  }
  if constexpr (KL == kLayoutFp8) {
    const float sc = static_cast<const float*>(k.scales)[static_cast<size_t>(j) * Hkv + hkv] * 256.f;
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      float x[4];
      e4m3x4(w[i], x);
#pragma unroll
      for (int e = 0; e < 4; ++e) dot_channel<GM>(qs, 4 * i + e, x[e] * sc, s);
    }
  } else if constexpr (KL == kLayoutToken) {
    // groups of ≥ 32 channels: each 32-channel chunk has one scale and zero
    const size_t g0 = static_cast<size_t>(j) * (W >> k.groupShift) + ((hkv * D) >> k.groupShift);
#pragma unroll
    for (int c32 = 0; c32 < D / 32; ++c32) {
      const size_t g = g0 + ((c32 * 32) >> k.groupShift);
      const float sc = __half2float(static_cast<const __half*>(k.scales)[g]);
      const float z = __half2float(k.zeros[g]);
#pragma unroll
      for (int e = 0; e < 32; ++e) {
        const int d = c32 * 32 + e;
        const unsigned int code = (w[d * BITS / 32] >> ((d * BITS) % 32)) & kMask;
        dot_channel<GM>(qs, d, fmaf(static_cast<float>(code), sc, z), s);
      }
    }
  } else {  // channel layout: a scale and zero per channel for this key's group of tokens
    const size_t r = static_cast<size_t>(j >> k.groupShift) * W + hkv * D;
    const __half2* sc2 = reinterpret_cast<const __half2*>(static_cast<const __half*>(k.scales) + r);
    const __half2* z2 = reinterpret_cast<const __half2*>(k.zeros + r);
#pragma unroll
    for (int d2 = 0; d2 < D / 2; ++d2) {
      const float2 sc = __half22float2(sc2[d2]);
      const float2 z = __half22float2(z2[d2]);
      const int d = 2 * d2;
      const unsigned int c0 = (w[d * BITS / 32] >> ((d * BITS) % 32)) & kMask;
      const unsigned int c1 = (w[(d + 1) * BITS / 32] >> (((d + 1) * BITS) % 32)) & kMask;
      dot_channel<GM>(qs, d, fmaf(static_cast<float>(c0), sc.x, z.x), s);
      dot_channel<GM>(qs, d + 1, fmaf(static_cast<float>(c1), sc.y, z.y), s);
    }
  }
}

// v[c] = v̂_j at this lane's channels hkv·D + lane·CPL + c.
template <int D, int VL, int BITS>
__device__ __forceinline__ void value_channels(const Part& v, int j, int hkv, int Hkv, int lane, float out[D / 32]) {
  constexpr int CPL = D / 32;
  const int W = Hkv * D;
  const int c0 = hkv * D + lane * CPL;
  if (j >= v.quantized) {
    const __nv_bfloat16* row = v.exactRow(j, W) + c0;
#pragma unroll
    for (int c = 0; c < CPL; ++c) out[c] = bf2f(row[c]);
    return;
  }
  const size_t rowBytes = static_cast<size_t>(W) * BITS / 8;
  const unsigned int word = reinterpret_cast<const unsigned int*>(v.codes + j * rowBytes)[(c0 * BITS) / 32];
  const int shift = (c0 * BITS) % 32;
  if constexpr (VL == kLayoutFp8) {
    float x[4];
    e4m3x4(word >> shift, x);
    const float sc = static_cast<const float*>(v.scales)[static_cast<size_t>(j) * Hkv + hkv] * 256.f;
#pragma unroll
    for (int c = 0; c < CPL; ++c) out[c] = x[c] * sc;
  } else {
    constexpr unsigned int kMask = (1u << BITS) - 1u;
    const size_t g0 = static_cast<size_t>(j) * (W >> v.groupShift);
#pragma unroll
    for (int c = 0; c < CPL; ++c) {
      const size_t g = g0 + ((c0 + c) >> v.groupShift);
      const unsigned int code = (word >> (shift + c * BITS)) & kMask;
      out[c] = fmaf(static_cast<float>(code), __half2float(static_cast<const __half*>(v.scales)[g]), __half2float(v.zeros[g]));
    }
  }
}

template <int D, int KL, int BITS, int GM>
__device__ __forceinline__ void peer_decode(const __nv_bfloat16* __restrict__ q, const Part& k, const Part& v, int n,
                                            int Hq, int Hkv, float scale, int unitKeys, int nUnits,
                                            float* __restrict__ partO, float2* __restrict__ partML) {
  constexpr int VL = KL == kLayoutFp8 ? kLayoutFp8 : kLayoutToken;
  constexpr int CPL = D / 32;
  __shared__ __align__(16) float qs[D * GM];     // q_h[d] at d·GM + h
  __shared__ float ps[kWarps][GM][32];           // one pass's probabilities, per warp
  const int G = Hq / Hkv;
  const int hkv = blockIdx.y;
  for (int i = threadIdx.x; i < D * GM; i += kThreads) {
    const int d = i / GM, h = i % GM;
    qs[i] = h < G ? bf2f(q[static_cast<size_t>(hkv * G + h) * D + d]) : 0.f;
  }
  __syncthreads();  // the only block barrier: warps run independently from here

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int unit = blockIdx.x * kWarps + warp;
  const int keyBegin = unit * unitKeys;
  if (unit >= nUnits || keyBegin >= n) return;
  const int keyEnd = min(keyBegin + unitKeys, n);
  const float sl2 = scale * kLog2e;

  float m[GM], l[GM], acc[GM][CPL];
#pragma unroll
  for (int h = 0; h < GM; ++h) {
    m[h] = NEG_INF;
    l[h] = 0.f;
#pragma unroll
    for (int c = 0; c < CPL; ++c) acc[h][c] = 0.f;
  }

  for (int j0 = keyBegin; j0 < keyEnd; j0 += 32) {
    const int j = j0 + lane;
    const bool valid = j < keyEnd;
    float s[GM];
#pragma unroll
    for (int h = 0; h < GM; ++h) s[h] = 0.f;
    if (valid) key_scores<D, KL, BITS, GM>(k, j, hkv, Hkv, qs, s);
#pragma unroll
    for (int h = 0; h < GM; ++h) {
      const float sc = valid ? s[h] : NEG_INF;
      const float mNew = fmaxf(m[h], warp_max(sc));  // finite: lane 0's key is always valid
      const float alpha = exp2f((m[h] - mNew) * sl2);  // 0 on the first pass (m = −inf)
      const float p = valid ? exp2f((sc - mNew) * sl2) : 0.f;
      l[h] = fmaf(l[h], alpha, p);  // this lane's share; summed over the warp at the end
#pragma unroll
      for (int c = 0; c < CPL; ++c) acc[h][c] *= alpha;
      m[h] = mNew;
      ps[warp][h][lane] = p;
    }
    __syncwarp();
    const int nk = min(32, keyEnd - j0);
    for (int jj = 0; jj < nk; ++jj) {
      float x[CPL];
      value_channels<D, VL, BITS>(v, j0 + jj, hkv, Hkv, lane, x);
#pragma unroll
      for (int h = 0; h < GM; ++h) {
        const float p = ps[warp][h][jj];
#pragma unroll
        for (int c = 0; c < CPL; ++c) acc[h][c] = fmaf(p, x[c], acc[h][c]);
      }
    }
    __syncwarp();  // ps is rewritten by the next pass
  }

#pragma unroll
  for (int h = 0; h < GM; ++h) {
    if (h >= G) break;
    const float lsum = warp_sum(l[h]);
    const size_t slot = (static_cast<size_t>(hkv) * nUnits + unit) * G + h;
    if (lane == 0) partML[slot] = make_float2(m[h] * sl2, lsum);
    float* o = partO + slot * D + lane * CPL;
#pragma unroll
    for (int c = 0; c < CPL; ++c) o[c] = acc[h][c];
  }
}

}  // namespace

// Arguments: q; the key part (codes, scales, zeros, groupShift, quantized, exact, exactBase, exactMod); the value
// part likewise; n keys, H_q, H_kv, scale = 1/sqrt(D_h), unitKeys, nUnits, partO, partML.
#define PEER_DECODE(NAME, D, KL, BITS, GM)                                                                        \
  extern "C" __global__ void __launch_bounds__(kThreads) NAME(                                                   \
      const __nv_bfloat16* __restrict__ q, const unsigned char* kCodes, const void* kScales, const __half* kZeros, \
      int kGroupShift, int kQuantized, const __nv_bfloat16* kExact, int kExactBase, int kExactMod,               \
      const unsigned char* vCodes, const void* vScales, const __half* vZeros, int vGroupShift, int vQuantized,     \
      const __nv_bfloat16* vExact, int vExactBase, int vExactMod, int n, int Hq, int Hkv, float scale,             \
      int unitKeys, int nUnits, float* __restrict__ partO, float2* __restrict__ partML) {                        \
    const Part k{kCodes, kScales, kZeros, kGroupShift, kQuantized, kExact, kExactBase, kExactMod};                \
    const Part v{vCodes, vScales, vZeros, vGroupShift, vQuantized, vExact, vExactBase, vExactMod};                \
    peer_decode<D, KL, BITS, GM>(q, k, v, n, Hq, Hkv, scale, unitKeys, nUnits, partO, partML);                   \
  }

#define PEER_DECODE_ALL(KIND, KL, BITS)                  \
  PEER_DECODE(peer_decode_##KIND##_d64_g4, 64, KL, BITS, 4)   \
  PEER_DECODE(peer_decode_##KIND##_d64_g8, 64, KL, BITS, 8)   \
  PEER_DECODE(peer_decode_##KIND##_d128_g4, 128, KL, BITS, 4) \
  PEER_DECODE(peer_decode_##KIND##_d128_g8, 128, KL, BITS, 8)

PEER_DECODE_ALL(int4, kLayoutToken, 4)
PEER_DECODE_ALL(int2, kLayoutToken, 2)
PEER_DECODE_ALL(kivi2, kLayoutChannel, 2)
PEER_DECODE_ALL(kivi1, kLayoutChannel, 1)
PEER_DECODE_ALL(fp8, kLayoutFp8, 8)
