import type { Backend } from '../../backend/backend.js';
import { CudaBackend } from '../../backend/cuda/cuda-backend.js';
import type { SeededRandom } from '../../model/seeded-random.js';
import type { LayerKeyCodebook } from '../codebook.js';
import { trainGroupEm, type EmConfig, type StageResult } from '../em.js';
import type { StageErrors } from '../encoder.js';
import { gpuStageErrors } from './gpu-encode.js';
import { GpuEmBackend, GpuKeys } from './gpu-em.js';

/**
 * The GPU side of train-key, loaded only when the backend is CUDA: EM of every group of one layer, and held-out
 * scoring with the GPU encoder.
 */

function cudaOf(backend: Backend): CudaBackend {
  if (!(backend instanceof CudaBackend)) throw new Error(`GPU key training needs the CUDA backend, got ${backend.device}`);
  return backend;
}

/** EM of all groups of one layer on the GPU: stages[g][r]. Rows [N, G·D] HF, pre-RoPE. `signal` as for trainGroupEm. */
export async function trainLayerEmGpu(
  backend: Backend, rows: Float32Array, groups: number, headDim: number, residuals: number,
  rngOf: (g: number) => (r: number) => SeededRandom, cfg: EmConfig, onStep: (g: number, r: number, s: number) => void, signal?: AbortSignal,
): Promise<StageResult[][]> {
  const { ctx } = cudaOf(backend);
  const keys = GpuKeys.upload(ctx, rows, groups, headDim);
  try {
    const out: StageResult[][] = [];
    for (let g = 0; g < groups; g++) {
      const be = new GpuEmBackend(ctx, keys.group(g), keys.n2, headDim);
      try {
        out.push(await trainGroupEm(be, residuals, rngOf(g), cfg, (r, s) => onStep(g, r, s), signal));
      } finally {
        be.dispose();
      }
    }
    return out;
  } finally {
    keys.dispose();
  }
}

export function stageErrorsGpu(backend: Backend, cb: LayerKeyCodebook, rows: Float32Array): StageErrors {
  return gpuStageErrors(cudaOf(backend).ctx, cb, rows);
}
