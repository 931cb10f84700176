/**
 * Device memory of the peer caches (int4/int2, fp8, KIVI): one layer's keys or values of one sequence in a layout of
 * kernels/peer_formats.cuh, preallocated for `capacity` tokens (fixed addresses; zero-filled, so a row never written,
 * as measure-memory's assumeFilled takes on, dequantizes to 0 rather than to whatever the allocator held), and the row
 * copies the caches make between their exact tails and the step's rows.
 *
 *   const keys = allocPeerPart(ctx, { layout: 'token', bits: 4, group: 64 }, 4096, { kvHeads: 8, headDim: 128 });
 *   keys.bytes   // 4096 · (512 + 2·2·16) = 2.36 MB
 *   keys.dispose();
 */
import { emptyTensor, rowView, type CudaTensor } from '../backend/cuda/cuda-tensor.js';
import type { CudaContextLike } from '../backend/cuda/kernels.js';
import { copyInto, zeroFill } from '../backend/cuda/ops/copies.js';
import type { PeerFormat, PeerHeads, PeerPart } from '../backend/cuda/ops/peer-cache.js';
import { allOrNothing, type Tensor } from '../tensor/tensor.js';

/** A part that owns its tensors. */
export interface OwnedPeerPart extends PeerPart {
  readonly codes: CudaTensor;
  readonly scales: CudaTensor;
  readonly zeros?: CudaTensor;
  /** bytes of codes, scales and zeros */
  readonly bytes: number;
  dispose(): void;
}

/** Codes, scales and zeros for `capacity` tokens (channel layout: rounded up to whole groups of tokens). */
export function allocPeerPart(ctx: CudaContextLike, format: PeerFormat, capacity: number, h: PeerHeads): OwnedPeerPart {
  const W = h.kvHeads * h.headDim;
  return allOrNothing((s) => {
    const make = (shape: number[], dtype: 'u8' | 'f16' | 'f32') => {
      const t = s.keep(emptyTensor(ctx, shape, dtype));
      zeroFill(ctx, t);
      return t;
    };
    const codes = make([capacity, (W * format.bits) / 8], 'u8'); // [cap, W·bits/8]
    let scales: CudaTensor;
    let zeros: CudaTensor | undefined;
    if (format.layout === 'fp8') {
      scales = make([capacity, h.kvHeads], 'f32'); // [cap, H_kv]
    } else {
      const shape = format.layout === 'token' ? [capacity, W / format.group] : [Math.ceil(capacity / format.group), W];
      scales = make(shape, 'f16');
      zeros = make(shape, 'f16');
    }
    const bytes = codes.byteLength + scales.byteLength + (zeros?.byteLength ?? 0);
    return { format, codes, scales, zeros, bytes, dispose: () => s.dispose() };
  });
}

/** Enqueues rows [srcRow, srcRow + n) of src into rows [dstRow, ..) of dst (same dtype and width). */
export function copyRows(ctx: CudaContextLike, dst: Tensor, dstRow: number, src: Tensor, srcRow: number, n: number): void {
  if (n > 0) copyInto(ctx, rowView(dst, dstRow, n), rowView(src, srcRow, n));
}

/**
 * Enqueues rows [srcRow, srcRow + n) of src into a ring of `slots` rows, position p at slot p mod slots, for
 * positions [p0, p0 + n) (at most `slots` of them): one copy, or two where the ring wraps.
 */
export function copyIntoRing(ctx: CudaContextLike, ring: Tensor, slots: number, p0: number, src: Tensor, srcRow: number, n: number): void {
  const at = p0 % slots;
  const first = Math.min(n, slots - at);
  copyRows(ctx, ring, at, src, srcRow, first);
  copyRows(ctx, ring, 0, src, srcRow + first, n - first);
}
