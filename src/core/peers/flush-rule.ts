/**
 * Which tokens of an int4/int2 cache stay exact: HF QuantizedCache's rule (transformers cache_utils.py,
 * QuantizedLayer.update), as a pure function of the exact count before a step.
 *
 * HF quantizes the whole prompt at its first update, then keeps decode tokens exact in `self.keys` until
 * `self.keys.shape[-2] + 1 >= residual_length`, when the step's keys are quantized together with the exact ones and
 * the exact part empties. So the exact part holds 0 .. R−1 decode tokens, and a flush moves a whole block of R
 * tokens (R−1 held + the step's) at once, never one token at a time. Prompt steps (every chunk of a chunked prompt)
 * quantize everything, as HF's first update does. R = 0 and R = 1 quantize every token at once.
 *
 *   exactAfterStep(0, 20, true, 128)    // 0: the prompt is quantized whole
 *   exactAfterStep(126, 1, false, 128)  // 127
 *   exactAfterStep(127, 1, false, 128)  // 0: the 128 exact tokens are quantized at once
 */
export function exactAfterStep(exact: number, tokens: number, prompt: boolean, residual: number): number {
  const held = exact + tokens;
  return prompt || held >= residual ? 0 : held;
}
