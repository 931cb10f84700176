/** A typed array that grows by doubling: the compressed cache appends a block of tokens at a time. */
export class Growable<T extends Uint8Array | Uint16Array | Float32Array> {
  private data: T;
  length = 0;

  constructor(private readonly make: (n: number) => T) {
    this.data = make(1024);
  }

  push(values: ArrayLike<number>): void {
    if (this.length + values.length > this.data.length) {
      const bigger = this.make(Math.max(this.data.length * 2, this.length + values.length));
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(values, this.length);
    this.length += values.length;
  }

  /** The filled part (a view: valid until the next push). */
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }

  truncate(length: number): void {
    this.length = Math.min(this.length, length);
  }
}
