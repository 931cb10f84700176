/**
 * The one rounding rule of src/core/quant: to the nearest integer, ties to even. It is what `torch.round` (used by
 * KIVI's and Hugging Face quanto's Python references) and CUDA's `rintf` / `__float2int_rn` do, so a GPU twin can
 * match the CPU reference code for code, and it has no bias on ties (half away from zero pushes every tie outward).
 */

/**
 * Rounds to the nearest integer, ties to even. Exact for every finite double (no `x + 0.5` tricks that round twice).
 *
 *   roundHalfEven(2.5)   // 2
 *   roundHalfEven(3.5)   // 4
 *   roundHalfEven(-2.5)  // -2
 *   roundHalfEven(2.6)   // 3
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +∞: exact for every double, only ties need fixing
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
