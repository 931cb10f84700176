// commvq_attn_rotation.cu — the RoPE rotation table of the compressed tokens of a CommVQ cache, read by
// commvq_key_logits.cu: one (cos φ, sin φ) per token and pair, shared by every kv head, layer and sequence of a batch
// (positions depend on the token index only: p_t = firstPos + t).
//
// Math: φ_{t,j} = f32(p_t · invFreq_j) (p_t < 2^24 is exact in f32), rot[t, j] = (cos φ, sin φ) by sincosf (no fast
//   math: exact range reduction for every position), as the CPU reference computes it.
//
// Tensors:
//   invFreq  [P]            f32
//   rot      [count, P]     float2 f32   out
//
// Launch: grid (ceil(count·P / 256)), block 256 threads, one entry per thread.
// Accumulation: f32.
// Entry point: commvq_attn_rotation.

constexpr int kThreads = 256;

extern "C" __global__ void __launch_bounds__(kThreads) commvq_attn_rotation(const float* __restrict__ invFreq,
                                                                       float2* __restrict__ rot, int P, int firstPos,
                                                                       int count) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<long long>(count) * P) return;
  const int t = static_cast<int>(i / P);
  const int j = static_cast<int>(i % P);
  float sn, cs;
  sincosf(__fmul_rn(static_cast<float>(firstPos + t), invFreq[j]), &sn, &cs);
  rot[i] = make_float2(cs, sn);
}
