/** Numerical comparison with a report a person can act on: the largest error and the first mismatches. */
export interface Mismatch {
  ok: boolean;
  maxAbsError: number;
  report: string;
}

/** Checks |actual − expected| ≤ atol + rtol·|expected| elementwise. */
export function compareArrays(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol = 0): Mismatch {
  if (actual.length !== expected.length) return { ok: false, maxAbsError: Infinity, report: `length ${actual.length} != ${expected.length}` };
  let maxAbsError = 0;
  let worst = 0;
  const bad: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const err = Math.abs(a - e);
    if (!(err <= maxAbsError) || Number.isNaN(a)) {
      maxAbsError = Number.isNaN(a) ? Infinity : err;
      worst = i;
    }
    if (!(err <= atol + rtol * Math.abs(e)) && bad.length < 5) bad.push(`[${i}] got ${a}, want ${e}`);
  }
  const report = `max |err| ${maxAbsError.toExponential(3)} at [${worst}]` + (bad.length ? `; first mismatches: ${bad.join(', ')}` : '');
  return { ok: bad.length === 0, maxAbsError, report };
}

/** ‖actual − expected‖₂ / ‖expected‖₂: the error measure for low-precision results, whose error scales with the row norm. */
export function relativeL2(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
