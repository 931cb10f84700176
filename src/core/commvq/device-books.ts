import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import type { LayerKeyCodebook } from '../keys/codebook.js';
import { attentionTheta } from './attention-theta.js';
import { bytesPerElement } from '../tensor/dtype.js';
import { numel } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import type { EncoderParams, ValueCompressorParams } from '../values/value-compressor.js';

/** Reads host (CPU backend) codebook tensors. */
const hostBackend = new CpuBackend();

/** One layer's codebooks on the device: θ (keys), E bf16 and ls f32 (values), the value encoder. */
export interface DeviceLayerBooks {
  theta: Tensor; // f32 [R, G, 128, D_h/2]: encoding and dequantization
  attentionTheta: Tensor; // f16 [S, G, 64, D_h/2, 2], S = attentionStages(R): attention on codes (attentionTheta)
  codebook: Tensor; // bf16 [N_c, D]: E, the only copy on the device
  scale: Tensor; // f32 [D]: ls
  encoder: EncoderParams; // w1, w2 bf16 (rounded once from the trained f32), the rest f32
}

/**
 * One layer's codebooks copied to the device: host (CPU) tensors are uploaded, device ones converted; E is kept in
 * bf16 only, and the encoder's two large matrices in bf16 like the model's weights (widened to f32 per encoding).
 *
 *   const books = uploadBooks(backend, codebook, values.get(l)!.params, values.get(l)!.scale);
 */
export function uploadBooks(b: CudaBackend, key: LayerKeyCodebook, params: ValueCompressorParams, scale: Tensor): DeviceLayerBooks {
  const toDevice = (t: Tensor, dtype: 'f32' | 'bf16') => (t.device === b.device ? b.cast(t, dtype) : b.fromArray(hostBackend.toFloat32(t), t.shape, dtype));
  return {
    theta: b.fromArray(key.theta, [key.theta.length], 'f32'),
    attentionTheta: uploadAttentionTheta(b, key),
    codebook: toDevice(params.codebook, 'bf16'),
    scale: toDevice(scale, 'f32'),
    encoder: {
      lnGamma: toDevice(params.lnGamma, 'f32'),
      lnBeta: toDevice(params.lnBeta, 'f32'),
      w1: toDevice(params.w1, 'bf16'),
      b1: toDevice(params.b1, 'f32'),
      w2: toDevice(params.w2, 'bf16'),
      b2: toDevice(params.b2, 'f32'),
    },
  };
}

function uploadAttentionTheta(b: CudaBackend, key: LayerKeyCodebook): Tensor {
  const t = attentionTheta(key.theta, key.shape.residuals, key.shape.groups, key.shape.pairs);
  return b.fromArray(t, [t.length], 'f16');
}

/** Bytes of device codebooks: θ, E and ls of every layer, and apart the value encoders. */
export function booksBytes(books: readonly DeviceLayerBooks[]): { codebooks: number; encoders: number } {
  const bytesOf = (t: Tensor) => numel(t.shape) * bytesPerElement(t.dtype);
  let codebooks = 0;
  let encoders = 0;
  for (const b of books) {
    codebooks += bytesOf(b.theta) + bytesOf(b.attentionTheta) + bytesOf(b.codebook) + bytesOf(b.scale);
    encoders += Object.values(b.encoder).reduce((n, t) => n + bytesOf(t), 0);
  }
  return { codebooks, encoders };
}

export function disposeBooks(books: readonly DeviceLayerBooks[]): void {
  for (const b of books) [b.theta, b.attentionTheta, b.codebook, b.scale, ...Object.values(b.encoder)].forEach((t) => t.dispose());
}
