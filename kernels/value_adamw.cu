// value_adamw.cu — TrainOps.adamw: one AdamW step in place (decoupled weight decay, as torch.optim.AdamW):
//   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p − lr·( (m/c₁)/(√(v/c₂) + eps) + wd·p ),  c_i = 1 − β_i^step.
//   p, m, v: [n] f32 (updated)   g: [n] f32   c₁, c₂ computed on the host in f64.
// Launch: grid-stride, block 256. f32 arithmetic (IEEE division and square root).
extern "C" __global__ void value_adamw_f32(float* p, const float* g, float* m, float* v, long long n, float lr,
                                           float beta1, float beta2, float eps, float wd, float c1, float c2) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i];
    p[i] = pi - lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * pi);
  }
}
