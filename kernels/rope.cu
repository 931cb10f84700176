// Rotary position embedding, rotate-half convention (HF apply_rotary_pos_emb), default and llama3 alike: the
// scaling lives in invFreq, precomputed on the host.
//   φ = f32(f32(position[t]) · invFreq[c])                      for c < D_h/2
//   cos = bf16(cosf(φ)·scaling), sin = bf16(sinf(φ)·scaling)  (transformers casts cos/sin to the model dtype)
//   out[c]         = bf16( bf16(x[c]·cos) − bf16(x[c+D_h/2]·sin) )
//   out[c+D_h/2]   = bf16( bf16(x[c+D_h/2]·cos) + bf16(x[c]·sin) )
// Each product and the sum are rounded to bf16, as PyTorch's eager bf16 ops round each result.
// sincosf is the accurate one (this file is built WITHOUT --use_fast_math): __sincosf loses all accuracy at the
// angles of positions near 131072.
//
//   x:         [T, heads·D_h] bf16, row-major, head h at columns [h·D_h, (h+1)·D_h)
//   positions: [T] i32, device memory (absolute positions)
//   invFreq:   [D_h/2] f32, device memory
//   out:       [T, heads·D_h] bf16 (may alias x)
//
// Launch: grid (T, heads), block min(D_h/2, 128); each thread rotates channel pairs (c, c + D_h/2). f32 math.
#include "common.cuh"

extern "C" __global__ void rope_bf16(__nv_bfloat16* out, const __nv_bfloat16* x, const int* __restrict__ positions,
                                     const float* __restrict__ inv_freq, int heads, int head_dim, float scaling) {
  const int t = blockIdx.x, h = blockIdx.y, half = head_dim >> 1;
  const long long base = ((long long)t * heads + h) * head_dim;
  const float pos = (float)positions[t];
  for (int c = threadIdx.x; c < half; c += blockDim.x) {
    const float phi = pos * inv_freq[c];
    float s, co;
    sincosf(phi, &s, &co);
    co = round_bf16(co * scaling);
    s = round_bf16(s * scaling);
    const float lo = bf2f(x[base + c]), hi = bf2f(x[base + c + half]);
    out[base + c] = f2bf(round_bf16(lo * co) - round_bf16(hi * s));
    out[base + c + half] = f2bf(round_bf16(hi * co) + round_bf16(lo * s));
  }
}
