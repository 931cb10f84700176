/**
 * Deterministic pseudo-random numbers (xorshift128+ seeded by splitmix64), so that a model made from a seed is
 * the same on every machine and every run.
 */

/** The seed every command and library call uses unless told otherwise (packing shuffles, EM draws, value init, Gumbel codes). */
export const DEFAULT_SEED = 42;

export class SeededRandom {
  private s0: bigint;
  private s1: bigint;

  constructor(seed: number) {
    let x = BigInt(seed) & 0xffffffffffffffffn;
    const next = () => {
      x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
      let z = x;
      z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
      z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
      return z ^ (z >> 31n);
    };
    this.s0 = next();
    this.s1 = next();
  }

  /** uniform in [0, 1) with 53 random bits */
  uniform(): number {
    let a = this.s0;
    const b = this.s1;
    this.s0 = b;
    a ^= (a << 23n) & 0xffffffffffffffffn;
    this.s1 = a ^ b ^ (a >> 17n) ^ (b >> 26n);
    return Number(((this.s1 + b) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
  }

  /** standard normal (Box–Muller) */
  normal(): number {
    const u = 1 - this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
}
