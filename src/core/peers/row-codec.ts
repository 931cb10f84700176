/**
 * A number format that stores each token's keys (or values) as one fixed-size byte row: the peer caches
 * (int4/int2, fp8) differ only in this, so one cache class (row-quant-cache.ts) holds them all.
 *
 * Rows: x [T, H_kv·D_h] f32 (a row is one token, head h owns columns h·D_h .. (h+1)·D_h) ↔ bytes [T, rowBytes].
 * Each token is encoded alone, so a cache's bytes depend only on its tokens, never on how the steps split them
 * (prompt chunks, batches): that is what lets a batch equal each sequence alone.
 */
export interface RowCodec {
  /** a short name for errors, e.g. 'int4-g64' */
  readonly name: string;
  /** bits per code (4, 2, 8): what a result records as the cache's bits */
  readonly bits: number;
  /** bytes of one token's row (codes and scales) */
  readonly rowBytes: number;
  /** encodes x: [rows, H_kv·D_h] into out[at·rowBytes ..], `rows` rows of rowBytes bytes */
  encode(x: Float32Array, rows: number, out: Uint8Array, at: number): void;
  /** decodes rows [from, from + rows) of `bytes` into x̂: [rows, H_kv·D_h] f32 */
  decode(bytes: Uint8Array, from: number, rows: number): Float32Array;
}
