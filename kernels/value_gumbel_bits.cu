// value_gumbel_bits.cu — TrainOps.gumbelBits and gumbelBitsBackward (spec §5.3 steps 5–6), one 4-way group per thread.
//
// Forward, group g (flat element index 4g + c = t·4n_e + 4k + c of logits [T, 4·n_e]):
//   noise g_c = −ln(−ln u), u = (mix32(key ^ (4g + c)) + 0.5)/2³² rounded to f32, key = mix32(mix32(seed) ^ stream)
//   (made on the host), each logarithm taken in f64 and rounded to f32 — the same numbers as gumbelNoise() in
//   src/core/values/train-ops.ts, so CPU and GPU pick the same categories (use_noise = 0: g = 0, the argmax encoder);
//   z_c = (ℓ_c + g_c)/τ in f64 as the CPU, k = argmax z (first on ties), soft_c = e^{z_c − max z}/Σ (f64, stored f32),
//   bits (2g, 2g+1) = CATEGORY_BITS[k] = {(1,0), (0,1), (1,1), (0,0)}.
// Backward (straight-through): dy = (db₀, db₁, db₀ + db₁, 0); dℓ_c += soft_c·(dy_c − Σ_c' soft_c'·dy_c')/τ.
//   logits, soft, dLogits: [T, 4·n_e] f32     bits, dBits: [T, 2·n_e] f32 (0/1 values in bits)
// Launch: grid-stride over the T·n_e groups, block 256; 16-byte loads and stores of a group's four values.
// Accumulation: f64 for z and the softmax (a handful of operations per group; the kernel is bound by memory).

__device__ __forceinline__ unsigned int mix32(unsigned int x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

__device__ __forceinline__ float gumbel(unsigned int key, unsigned int index) {
  const unsigned int h = mix32(key ^ index);
  const float u = (float)(((double)(h >> 9) + 0.5) / 8388608.0);  // 23 bits + 1/2: exact in f32, inside (0, 1)
  const float a = (float)(-log((double)u));
  return (float)(-log((double)a));
}

extern "C" __global__ void value_gumbel_bits_f32(float* bits, float* soft, const float* logits, long long groups,
                                                 float tau, unsigned int key, int use_noise) {
  const float2 kBits[4] = {make_float2(1.f, 0.f), make_float2(0.f, 1.f), make_float2(1.f, 1.f), make_float2(0.f, 0.f)};
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
       g += (long long)gridDim.x * blockDim.x) {
    const float4 l = reinterpret_cast<const float4*>(logits)[g];
    const float lv[4] = {l.x, l.y, l.z, l.w};
    double z[4];
    const unsigned int index = (unsigned int)(4 * g);  // the CPU's index, modulo 2³² as JavaScript's ^ takes it
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const double noise = use_noise ? (double)gumbel(key, index + c) : 0.0;
      z[c] = ((double)lv[c] + noise) / (double)tau;
    }
    int best = 0;
#pragma unroll
    for (int c = 1; c < 4; ++c)
      if (z[c] > z[best]) best = c;
    const double m = z[best];
    double e[4], sum = 0.0;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      e[c] = exp(z[c] - m);
      sum += e[c];
    }
    reinterpret_cast<float4*>(soft)[g] = make_float4((float)(e[0] / sum), (float)(e[1] / sum), (float)(e[2] / sum),
                                                     (float)(e[3] / sum));
    reinterpret_cast<float2*>(bits)[g] = kBits[best];
  }
}

extern "C" __global__ void value_gumbel_bits_backward_f32(float* dlogits, const float* dbits, const float* soft,
                                                          long long groups, float inv_tau) {
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
       g += (long long)gridDim.x * blockDim.x) {
    const float2 db = reinterpret_cast<const float2*>(dbits)[g];
    const float4 s = reinterpret_cast<const float4*>(soft)[g];
    const float dy[4] = {db.x, db.y, db.x + db.y, 0.f};
    const float dot = s.x * dy[0] + s.y * dy[1] + s.z * dy[2] + s.w * dy[3];
    float4 d = reinterpret_cast<float4*>(dlogits)[g];
    d.x += s.x * (dy[0] - dot) * inv_tau;
    d.y += s.y * (dy[1] - dot) * inv_tau;
    d.z += s.z * (dy[2] - dot) * inv_tau;
    d.w += s.w * (dy[3] - dot) * inv_tau;
    reinterpret_cast<float4*>(dlogits)[g] = d;
  }
}
