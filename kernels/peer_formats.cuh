// peer_formats.cuh — the number formats of the peer caches (int4/int2, fp8, KIVI) on the device, each the exact twin
// of its CPU reference in src/core/quant/: affine groups (affine-groups.ts), e4m3 (fp8-e4m3.ts), LSB-first packed
// codes (pack-codes.ts), and the two-source row reader the quantize kernels share.
//
// Part layouts (one layer, one sequence, keys or values; W = H_kv·D_h, every row a token):
//   token   (int4/int2 keys and values, KIVI values): codes u8 [cap, W·bits/8]; scales, zeros f16 [cap, W/group]
//   channel (KIVI keys):                              codes u8 [cap, W·bits/8]; scales, zeros f16 [cap/group, W]
//   fp8     (fp8 keys and values):                    codes u8 [cap, W] e4m3;   scales f32 [cap, H_kv]
// Groups are powers of two (they divide D_h ∈ {64, 128}), passed as their log2.
#pragma once

#include "common.cuh"

#define POS_INF __int_as_float(0x7f800000)

enum : int { kLayoutToken = 0, kLayoutChannel = 1, kLayoutFp8 = 2 };

// e4m3 code → value (fp8-e4m3.ts e4m3ToF32): normals 2^(e−7)·(1 + m/8), subnormals m·2^−9, 0x7f/0xff NaN.
__device__ __forceinline__ float e4m3_to_f32(unsigned int code) {
  const unsigned int sign = (code & 0x80u) << 24;
  const unsigned int e = (code >> 3) & 0xfu, m = code & 7u;
  if (e == 15u && m == 7u) return __int_as_float(0x7fc00000);
  if (e == 0u) return __uint_as_float(sign | __float_as_uint(static_cast<float>(m) * __int_as_float(0x3b000000)));  // m·2^-9
  return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

// Value → e4m3 code (fp8-e4m3.ts f32ToE4m3): nearest, ties to even mantissa, saturating to ±448, NaN → 0x7f.
__device__ __forceinline__ unsigned int f32_to_e4m3(float x) {
  if (x != x) return 0x7fu;
  const unsigned int bits = __float_as_uint(x);
  const unsigned int sign = (bits >> 24) & 0x80u;
  const float a = fabsf(x);
  if (a >= 448.f) return sign | 0x7eu;
  if (a < __int_as_float(0x3c800000)) return sign | static_cast<unsigned int>(rintf(a * 512.f));  // a < 2^-6: m·2^-9
  int e = static_cast<int>((bits >> 23) & 0xffu) - 127;  // a is a normal f32 here
  // (a/2^e − 1)·8 exactly: the 23 fraction bits scaled by 2^-20
  unsigned int m = static_cast<unsigned int>(rintf(static_cast<float>(bits & 0x7fffffu) * __int_as_float(0x35800000)));
  if (m == 8u) {
    m = 0u;
    ++e;
  }
  const unsigned int code = sign | (static_cast<unsigned int>(e + 7) << 3) | m;
  return min(code, sign | 0x7eu);
}

// The rows a quantization reads, by absolute position p in the sequence: p ≥ split from `b` (row p − split), the
// others from `a` at slot (p − aBase) mod aMod (aMod = 0: no wrap). Rows are W bf16 wide.
struct RowSource {
  const __nv_bfloat16* a;
  int aBase;
  int aMod;
  int split;
  const __nv_bfloat16* b;
};

__device__ __forceinline__ const __nv_bfloat16* source_row(const RowSource& s, int p, int W) {
  if (p >= s.split) return s.b + static_cast<size_t>(p - s.split) * W;
  const int slot = s.aMod > 0 ? (p - s.aBase) % s.aMod : p - s.aBase;
  return s.a + static_cast<size_t>(slot) * W;
}

// Affine scale and zero of one group (affine-groups.ts quantizeAffine): s′ = f16(f32((max − min) / L)) with the
// difference and quotient in double as the JavaScript reference computes them, z′ = f16(min). min and max are taken
// with the reference's comparisons in the same order, so ±0 and ties pick the same element.
__device__ __forceinline__ void affine_minmax_update(float v, float& mn, float& mx) {
  if (v < mn) mn = v;
  if (v > mx) mx = v;
}
__device__ __forceinline__ void affine_scale_zero(float mn, float mx, int bits, __half& s, __half& z) {
  const double L = static_cast<double>((1 << bits) - 1);
  s = __float2half_rn(__double2float_rn((static_cast<double>(mx) - static_cast<double>(mn)) / L));
  z = __float2half_rn(mn);
}

// q = clamp(roundHalfEven(f32(f32(x − z′) / s′)), 0, L), 0 where s′ = 0.
__device__ __forceinline__ unsigned int affine_code(float x, float s, float z, int bits) {
  if (s == 0.f) return 0u;
  const float t = rintf(__fdiv_rn(__fsub_rn(x, z), s));
  const float L = static_cast<float>((1 << bits) - 1);
  return static_cast<unsigned int>(fminf(L, fmaxf(0.f, t)));
}
