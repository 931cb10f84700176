import { existsSync } from 'node:fs';
import type { Backend } from '../backend/backend.js';
import { CommvqError } from '../errors.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { Tensor } from '../tensor/tensor.js';
import { PARAM_NAMES, paramShapes, type ParamName, type ValueCompressorShape } from './value-compressor.js';
import type { LayerState, StepLosses } from './value-trainer.js';

/**
 * A train-value checkpoint: every layer's parameters and AdamW moments (f32, exact), the step count and the loss
 * history, in one safetensors file written atomically. The Gumbel noise and the data order are functions of the
 * seed and the step, so restoring these is all a bit-for-bit resume needs.
 */
export const CHECKPOINT_FORMAT = 'commvq.value-train-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface CheckpointInfo {
  step: number;
  bits: number;
  seed: number;
  configHash: string;
  layers: number[];
  history: (StepLosses & { step: number })[];
  /** windows per step over all ranks (absent before data parallelism: 1); never the world size, so any W dividing it resumes */
  batch?: number;
}

export function saveCheckpoint(path: string, backend: Backend, layers: Map<number, LayerState>, info: CheckpointInfo): void {
  const tensors: Record<string, TensorToWrite> = {};
  const put = (name: string, t: Tensor) => (tensors[name] = { dtype: 'F32', shape: [...t.shape], data: backend.toHost(t) });
  for (const [layer, state] of layers) {
    for (const n of PARAM_NAMES) {
      put(`L${layer}.${n}`, state.params[n]);
      put(`L${layer}.${n}.m`, state.m[n]);
      put(`L${layer}.${n}.v`, state.v[n]);
    }
  }
  writeSafetensors(path, tensors, { format: CHECKPOINT_FORMAT, version: String(CHECKPOINT_VERSION), info: JSON.stringify(info) });
}

/** Restores parameters and moments into `layers` (already shaped), returning the saved info. */
export function loadCheckpoint(path: string, backend: Backend, shape: ValueCompressorShape, layers: Map<number, LayerState>): CheckpointInfo {
  if (!existsSync(path)) throw new CommvqError(`${path}: no checkpoint to resume from`, 'start without resume');
  const file = new SafetensorsFile(path);
  try {
    if (file.metadata.format !== CHECKPOINT_FORMAT) throw new CommvqError(`${path}: not a train-value checkpoint`);
    if (Number(file.metadata.version) !== CHECKPOINT_VERSION) throw new CommvqError(`${path}: checkpoint version ${file.metadata.version}, this commvq reads ${CHECKPOINT_VERSION}`);
    let info: CheckpointInfo;
    try {
      info = JSON.parse(file.metadata.info ?? '') as CheckpointInfo;
    } catch {
      throw new CommvqError(`${path}: corrupt checkpoint: its metadata is not valid JSON`);
    }
    const shapes = paramShapes(shape);
    const read = (name: string, want: number[], into: Tensor) => {
      const t = file.tensors.get(name);
      if (!t || t.dtype !== 'F32' || t.shape.join() !== want.join()) throw new CommvqError(`${path}: corrupt checkpoint: tensor ${name} is missing or misshapen`);
      const bytes = file.read(name);
      backend.upload(into, new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
    };
    for (const [layer, state] of layers) {
      for (const n of PARAM_NAMES as readonly ParamName[]) {
        read(`L${layer}.${n}`, shapes[n], state.params[n]);
        read(`L${layer}.${n}.m`, shapes[n], state.m[n]);
        read(`L${layer}.${n}.v`, shapes[n], state.v[n]);
      }
    }
    return info;
  } finally {
    file.close();
  }
}
