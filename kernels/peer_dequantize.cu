// peer_dequantize.cu — a peer cache's quantized rows back to bf16: what a prompt chunk attends over (the codes before
// it; decode steps never materialize this, peer_attention_decode.cu reads the codes), and what tests read back.
//
// Math: token/channel layouts x̂ = q·s′ + z′ (one f32 fma, as affine-groups.ts dequantizeAffine), fp8 x̂ = e4m3(q)·s;
//   then rounded to bf16 (the dense attention kernels' input dtype).
// Tensors (W = H_kv·D_h; layouts of peer_formats.cuh): codes u8 [≥n, W·bits/8]; scales, zeros as the layout says;
//   out bf16 [≥n, W], rows 0 .. n − 1 written.
// Launch: one thread per element, grid ceil(n·W / 256), block 256.
// Accumulation: f32, one rounding to bf16 at the end.
// Entry point: peer_dequantize.

#include "peer_formats.cuh"

extern "C" __global__ void __launch_bounds__(256)
    peer_dequantize(const unsigned char* __restrict__ codes, const void* __restrict__ scales,
                    const __half* __restrict__ zeros, int n, int Hkv, int D, int layout, int bits, int groupShift,
                    __nv_bfloat16* __restrict__ out) {
  const int W = Hkv * D;
  const long long id = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= static_cast<long long>(n) * W) return;
  const int p = static_cast<int>(id / W), c = static_cast<int>(id % W);
  const int bit = c * bits;
  const unsigned int q = (codes[static_cast<size_t>(p) * (W * bits / 8) + (bit >> 3)] >> (bit & 7)) & ((1u << bits) - 1u);
  float x;
  if (layout == kLayoutFp8) {
    x = e4m3_to_f32(q) * static_cast<const float*>(scales)[static_cast<size_t>(p) * Hkv + c / D];
  } else {
    const size_t g = layout == kLayoutToken ? static_cast<size_t>(p) * (W >> groupShift) + (c >> groupShift)
                                            : static_cast<size_t>(p >> groupShift) * W + c;
    x = fmaf(static_cast<float>(q), __half2float(static_cast<const __half*>(scales)[g]), __half2float(zeros[g]));
  }
  out[id] = f2bf(x);
}
