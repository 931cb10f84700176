import type { Backend } from '../backend/backend.js';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { CpuTrainOps } from './cpu-train-ops.js';
import type { TrainOps } from './train-ops.js';

/** The TrainOps of a backend: the plain-loop reference on the CPU, CUDA kernels on a GPU (loaded only then). */
export async function createTrainOps(backend: Backend): Promise<TrainOps> {
  if (backend instanceof CpuBackend) return new CpuTrainOps(backend);
  const { CudaBackend } = await import('../backend/cuda/cuda-backend.js');
  if (!(backend instanceof CudaBackend)) throw new Error(`no training ops for backend ${backend.device}`);
  const { CudaTrainOps } = await import('./cuda-train-ops.js');
  return new CudaTrainOps(backend);
}
