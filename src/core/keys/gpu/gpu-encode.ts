import type { CudaContext } from '../../backend/cuda/context.js';
import type { LayerKeyCodebook } from '../codebook.js';
import type { StageErrors } from '../encoder.js';
import { GpuKeys } from './gpu-em.js';
import * as k from './key-launchers.js';

/**
 * The key encoder on the GPU (kernels/key_estep.cu key_assign: structured nearest centre, residual update),
 * matching encoder.ts: per-stage errors of keys [N, G·D_h] (HF) under a codebook, and optionally the codes
 * [R, G, N]. For the report on large held-out sets and for tests against the CPU encoder.
 *
 *   const { error, power } = gpuStageErrors(ctx, codebook, heldOutRows);
 */
export function gpuStageErrors(ctx: CudaContext, cb: LayerKeyCodebook, rows: Float32Array, codesOut?: Int32Array): StageErrors {
  const { residuals: R, groups: G, pairs: P, halfSize } = cb.shape;
  if (halfSize !== 64) throw new Error(`GPU key encoder: N_h must be 64, not ${halfSize}`);
  const D = 2 * P;
  const keys = GpuKeys.upload(ctx, rows, G, D);
  const N = keys.tokens;
  const blocks = k.estepBlocks(ctx);
  const theta = ctx.alloc(k.thetaFloats(P) * 4);
  const err = ctx.alloc(blocks * 4);
  const vn = ctx.alloc(N * 4);
  const codes = codesOut ? ctx.alloc(N * 4) : undefined;
  try {
    const n2 = new Float32Array(N);
    ctx.download(new Uint8Array(n2.buffer), keys.n2.ptr);
    const power = new Float64Array(G);
    const error = new Float64Array(R * G);
    const host = new Float32Array(N);
    const errHost = new Float32Array(blocks);
    for (let g = 0; g < G; g++) {
      k.sqnormRows(ctx, keys.group(g), vn.ptr, N, D);
      ctx.download(new Uint8Array(host.buffer), vn.ptr);
      for (let t = 0; t < N; t++) power[g] += n2[t]! * host[t]!;
      for (let r = 0; r < R; r++) {
        const st = cb.stage(r, g);
        ctx.upload(theta.ptr, new Uint8Array(st.buffer, st.byteOffset, st.byteLength));
        k.stageTables(ctx, theta.ptr, P);
        ctx.memset(err.ptr, 0, blocks * 4);
        k.assign(ctx, blocks, keys.group(g), keys.n2.ptr, theta.ptr, N, codes?.ptr ?? 0n, err.ptr, D);
        ctx.download(new Uint8Array(errHost.buffer), err.ptr);
        error[r * G + g] = errHost.reduce((a, b) => a + b, 0);
        if (codes && codesOut) {
          const c = new Int32Array(N);
          ctx.download(new Uint8Array(c.buffer), codes.ptr);
          codesOut.set(c, (r * G + g) * N);
        }
      }
    }
    return { tokens: N, power, error };
  } finally {
    ctx.synchronize();
    theta.free();
    err.free();
    vn.free();
    codes?.free();
    keys.dispose();
  }
}
