// Warp-level primitives shared by the attention kernels (sm_80+): shared-memory addresses, cp.async copies, ldmatrix,
// the m16n8k16 bf16 and f16 tensor-core MMAs, ex2, bf16 and f16 packing and the swizzled tile offset. Header only,
// without the C++ standard library or <math.h>, so that NVRTC compiles it as nvcc does.
#pragma once

#include <cuda_bf16.h>

namespace {

using u32 = unsigned int;  // no <stdint.h>: NVRTC has no host headers

// −∞ without <math.h>'s INFINITY
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }

__device__ __forceinline__ u32 smem_addr(const void* p) { return static_cast<u32>(__cvta_generic_to_shared(p)); }

// 16-byte global → shared copy; with pred false nothing is read and the 16 bytes are zero-filled.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0)
               : "memory");
}
// 16-byte global → shared copy of a chunk known to be in bounds.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// waits until at most N committed groups are still in flight
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// four 8×8 b16 matrices from shared memory into the fragment layout of mma (and transposed); the _at form reads at
// addr + OFF, the constant folded into the instruction (no address arithmetic)
template <int OFF>
__device__ __forceinline__ void ldmatrix_x4_at(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4+%5];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr), "n"(OFF));
}
__device__ __forceinline__ void ldmatrix_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
  ldmatrix_x4_at<0>(addr, r0, r1, r2, r3);
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c += a·b for one m16n8k16 tile: a 16×16 bf16 (row), b 16×8 bf16 (col), c 16×8 f32.
__device__ __forceinline__ void mma_bf16(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  mma_bf16(c, a[0], a[1], a[2], a[3], b0, b1);
}

// c += a·b for one m16n8k16 tile: a 16×16 f16 (row), b 16×8 f16 (col), c 16×8 f32. Not volatile: the compiler may
// interleave independent tiles (the result is a pure function of the operands). (Not `mma_f16`: commvq_key_logits.cu
// has its own.)
__device__ __forceinline__ void mma_f16_f32(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 2^x by the SFU (ex2.approx, flush-to-zero)
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// two f32 → one register of two bf16 (round to nearest even), lo in the low half
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<u32*>(&v);
}

// two f32 → one register of two f16 (round to nearest even; overflow → ±inf), lo in the low half
__device__ __forceinline__ u32 pack_f16(float lo, float hi) {
  u32 d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}

// Byte offset of 16-byte chunk c of row r in a tile whose rows hold D bf16. The chunk index is XORed with r mod 8 so
// that the 8 rows one ldmatrix phase reads fall in 8 different bank groups.
template <int D>
__device__ __forceinline__ u32 swz(int r, int c) {
  return static_cast<u32>(r * (D * 2) + ((c ^ (r & 7)) << 4));
}

}  // namespace
