// Embedding gather: out[t, :] = table[ids[t], :].
//
//   table: [V, hidden] bf16, row-major (HF `embed_tokens.weight`)
//   ids:   [T] i32, device memory; an id outside [0, V) yields a zero row (the host checks ids before launch)
//   out:   [T, hidden] bf16
//
// Launch: grid (T), block 256; each thread copies 8 bf16 (16 bytes) at a time when hidden % 8 == 0, else one.
// No arithmetic, so no accumulation dtype.
// nvcc-flags: --use_fast_math
#include "common.cuh"

extern "C" __global__ void embedding_bf16(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ table,
                                          const int* __restrict__ ids, int V, int hidden) {
  const int t = blockIdx.x;
  const int id = ids[t];
  __nv_bfloat16* dst = out + (long long)t * hidden;
  if (id < 0 || id >= V) {
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = f2bf(0.f);
    return;
  }
  const __nv_bfloat16* src = table + (long long)id * hidden;
  if ((hidden & 7) == 0) {
    for (int i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8) store8(dst + i, load8(src + i));
  } else {
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}
