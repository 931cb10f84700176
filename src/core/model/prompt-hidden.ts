import type { Backend, HostStaging } from '../backend/backend.js';
import { bytesPerElement } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Hidden states of a prompt above this size live in pinned host memory during a layer-major prefill (256 MiB: a
 * 32K-token prompt of Llama-3.1-8B keeps them on the device, a 128K one moves its 1 GiB out). A 128K prompt then
 * fits beside an 8B model, a 1-bit CommVQ cache and one layer's scratch on an 80 GB card, at the price of copying
 * them over PCIe in and out once per layer (≈ 2 GiB per layer at 128K, ≈ 40 ms at 50 GB/s, 8% of a dense prefill).
 */
export const DEVICE_HIDDEN_BYTES = 256 * 2 ** 20;

/** Where a layer-major prefill keeps the prompt's hidden states [T, hidden] between layers. */
export interface PromptHidden {
  /** Rows [row, row + n) as a new device tensor [n, hidden] (the caller disposes it). */
  read(row: number, n: number): Tensor;
  /** Rows [row, row + t's rows) ← t. */
  write(row: number, t: Tensor): void;
  dispose(): void;
}

/**
 * The prompt's hidden states in device memory, or (`onHost`) in pinned host memory: rows go to the device for a
 * chunk's block and come back after it, both copies on the backend's stream, in order with the work around them.
 *
 *   const h = promptHidden(backend, T, hidden, T * hidden * 2 > DEVICE_HIDDEN_BYTES);
 */
export function promptHidden(b: Backend, T: number, hidden: number, onHost: boolean): PromptHidden {
  const dtype = b.activationDType;
  if (!onHost) {
    const h = b.zeros([T, hidden], dtype);
    return { read: (row, n) => b.sliceRows(h, row, row + n), write: (row, t) => b.writeRows(h, row, t), dispose: () => h.dispose() };
  }
  const rowBytes = hidden * bytesPerElement(dtype);
  const staging: HostStaging = b.allocStaging(T * rowBytes);
  const rows = (row: number, n: number) => staging.bytes.subarray(row * rowBytes, (row + n) * rowBytes);
  return {
    read: (row, n) => b.fromBytes(rows(row, n), [n, hidden], dtype),
    write: (row, t) => b.downloadAsync(t, rows(row, t.shape[0]!)),
    dispose: () => {
      b.synchronize(); // the last copies out must land before the memory goes
      staging.dispose();
    },
  };
}
