import { CommvqError } from '../errors.js';
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu/cpu-backend.js';

/** `auto` | `cpu` | `cuda` | `cuda:N`, as the --device flag takes it. */
export type DeviceSpec = { kind: 'auto' } | { kind: 'cpu' } | { kind: 'cuda'; index: number };

export function parseDevice(name: string): DeviceSpec {
  if (name === 'auto' || name === 'cpu') return { kind: name };
  const m = /^cuda(?::(\d+))?$/.exec(name);
  if (!m) throw new CommvqError(`unknown device '${name}' (use auto, cpu, cuda or cuda:N)`);
  return { kind: 'cuda', index: Number(m[1] ?? 0) };
}

/**
 * The backend for a device name. `auto` takes the first GPU when a CUDA driver is found and falls back to the CPU;
 * `cuda` without a usable GPU is an error that says what is missing. The CUDA code is loaded only when asked for.
 *
 *   const backend = await createBackend('auto');
 */
export async function createBackend(name: string): Promise<Backend> {
  const spec = parseDevice(name);
  if (spec.kind === 'cpu') return new CpuBackend();
  if (spec.kind === 'auto') {
    try {
      const cuda = await import('./cuda/cuda-backend.js');
      if (cuda.cudaAvailable()) return cuda.CudaBackend.create(0);
    } catch {
      // no usable CUDA here (no driver, no GPU, FFI unavailable): auto means fall back
    }
    return new CpuBackend();
  }
  const cuda = await import('./cuda/cuda-backend.js');
  return cuda.CudaBackend.create(spec.index);
}
