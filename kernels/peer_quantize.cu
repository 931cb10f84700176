// peer_quantize.cu — quantization of a peer cache's new tokens on the GPU, in the formats of peer_formats.cuh, as the
// CPU references encode them (affine-groups.ts quantizeAffine, fp8-e4m3.ts quantizeFp8PerHead), code for code.
//
// Math: affine groups x̂ = q·s′ + z′ with s′ = f16((max − min)/L), z′ = f16(min), q = clamp(rne((x − z′)/s′), 0, L);
//   fp8 per token and head: s = amax/448 (f32), code = e4m3(x/s) saturating.
// Tensors (W = H_kv·D_h; positions p are absolute token positions of one sequence):
//   source rows x [·, W] bf16, read through a RowSource (peer_formats.cuh): the exact tail or ring for positions
//            before `split`, the step's own rows from `split` on
//   codes   u8 [cap, W·bits/8] (LSB-first within a row), rows p0 .. p0 + T − 1 written
//   scales, zeros: token layout f16 [cap, W/group] rows p0 ..; channel layout f16 [cap/group, W] rows p0/group ..
//            (p0 and T multiples of group); fp8 scales f32 [cap, H_kv]
// Launch:
//   peer_affine_scales: one thread per group, grid ceil(groups/256), block 256 (groups = T·W/group either way)
//   peer_affine_codes:  one thread per code byte, grid ceil(T·W·bits/8 / 256), block 256; after the scales (the
//                       codes are computed from the stored s′, z′ as the reference does)
//   peer_fp8_quantize:  one warp per (token, head), grid ceil(T·H_kv / 8), block 256
// Accumulation: min/max exact in f32; s′ in double then f32 then f16 (the reference's JavaScript arithmetic).
// Entry points: peer_affine_scales, peer_affine_codes, peer_fp8_quantize.

#include "peer_formats.cuh"

extern "C" __global__ void __launch_bounds__(256)
    peer_affine_scales(const __nv_bfloat16* a, int aBase, int aMod, int split, const __nv_bfloat16* b, int p0, int T,
                       int W, int layout, int bits, int groupShift, __half* __restrict__ scales,
                       __half* __restrict__ zeros) {
  const RowSource src{a, aBase, aMod, split, b};
  const int group = 1 << groupShift;
  const long long nGroups = static_cast<long long>(T) * W >> groupShift;
  const long long gid = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= nGroups) return;
  float mn = POS_INF, mx = -POS_INF;
  size_t out;
  if (layout == kLayoutToken) {  // group (t, j): channels j·group .. of token p0 + t
    const int perRow = W >> groupShift;
    const int t = static_cast<int>(gid / perRow), j = static_cast<int>(gid % perRow);
    const __nv_bfloat16* x = source_row(src, p0 + t, W) + (j << groupShift);
    for (int k = 0; k < group; ++k) affine_minmax_update(bf2f(x[k]), mn, mx);
    out = static_cast<size_t>(p0 + t) * perRow + j;
  } else {  // group (i, c): tokens p0 + i·group .. of channel c
    const int i = static_cast<int>(gid / W), c = static_cast<int>(gid % W);
    const int first = p0 + (i << groupShift);
    for (int k = 0; k < group; ++k) affine_minmax_update(bf2f(source_row(src, first + k, W)[c]), mn, mx);
    out = static_cast<size_t>(first >> groupShift) * W + c;
  }
  __half s, z;
  affine_scale_zero(mn, mx, bits, s, z);
  scales[out] = s;
  zeros[out] = z;
}

extern "C" __global__ void __launch_bounds__(256)
    peer_affine_codes(const __nv_bfloat16* a, int aBase, int aMod, int split, const __nv_bfloat16* b, int p0, int T,
                      int W, int layout, int bits, int groupShift, const __half* __restrict__ scales,
                      const __half* __restrict__ zeros, unsigned char* __restrict__ codes) {
  const RowSource src{a, aBase, aMod, split, b};
  const int rowBytes = W * bits / 8;
  const long long nBytes = static_cast<long long>(T) * rowBytes;
  const long long id = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= nBytes) return;
  const int t = static_cast<int>(id / rowBytes), byte = static_cast<int>(id % rowBytes);
  const int p = p0 + t;
  const __nv_bfloat16* x = source_row(src, p, W);
  const int perByte = 8 / bits;
  unsigned int packed = 0u;
  for (int e = 0; e < perByte; ++e) {
    const int c = byte * perByte + e;
    const size_t g = layout == kLayoutToken ? static_cast<size_t>(p) * (W >> groupShift) + (c >> groupShift)
                                            : static_cast<size_t>(p >> groupShift) * W + c;
    packed |= affine_code(bf2f(x[c]), __half2float(scales[g]), __half2float(zeros[g]), bits) << (e * bits);
  }
  codes[static_cast<size_t>(p) * rowBytes + byte] = static_cast<unsigned char>(packed);
}

extern "C" __global__ void __launch_bounds__(256)
    peer_fp8_quantize(const __nv_bfloat16* a, int aBase, int aMod, int split, const __nv_bfloat16* b, int p0, int T,
                      int Hkv, int D, unsigned char* __restrict__ codes, float* __restrict__ scales) {
  const RowSource src{a, aBase, aMod, split, b};
  const int W = Hkv * D;
  const int warp = static_cast<int>((static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5);
  const int lane = threadIdx.x & 31;
  if (warp >= T * Hkv) return;  // whole warps exit together
  const int t = warp / Hkv, h = warp % Hkv;
  const int p = p0 + t;
  const __nv_bfloat16* x = source_row(src, p, W) + h * D;
  float amax = 0.f;
  for (int d = lane; d < D; d += 32) amax = fmaxf(amax, fabsf(bf2f(x[d])));
  amax = warp_max(amax);
  const float s = __fdiv_rn(amax, 448.f);
  unsigned char* out = codes + static_cast<size_t>(p) * W + h * D;
  for (int d = lane; d < D; d += 32) out[d] = s == 0.f ? 0 : static_cast<unsigned char>(f32_to_e4m3(__fdiv_rn(bf2f(x[d]), s)));
  if (lane == 0) scales[static_cast<size_t>(p) * Hkv + h] = s;
}
