/** Model folders made by tests from the fixtures: bf16 copies, sharded copies, corrupted copies. */
import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { f32ToBf16 } from '../../src/core/tensor/dtype.js';

/** A fresh temporary folder holding every non-weight file of `src` (config, tokenizer, generation config). */
export function copyModelFolder(src: string, prefix = 'commvq-model-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const f of readdirSync(src)) if (!f.endsWith('.safetensors')) copyFileSync(join(src, f), join(dir, f));
  return dir;
}

/** The tensors of `src/model.safetensors`, F32 converted to BF16 (round to nearest even) when `bf16`. */
export function readWeights(src: string, bf16: boolean): Record<string, TensorToWrite> {
  const file = new SafetensorsFile(join(src, 'model.safetensors'));
  const out: Record<string, TensorToWrite> = {};
  for (const info of file.tensors.values()) {
    const bytes = file.read(info.name);
    if (bf16 && info.dtype === 'F32') {
      const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      out[info.name] = { dtype: 'BF16', shape: info.shape, data: Uint16Array.from(f32, f32ToBf16) };
    } else {
      out[info.name] = { dtype: info.dtype, shape: info.shape, data: bytes };
    }
  }
  file.close();
  return out;
}

/** A copy of a model folder whose weights are bf16. */
export function bf16Copy(src: string): string {
  const dir = copyModelFolder(src, 'commvq-bf16-');
  writeSafetensors(join(dir, 'model.safetensors'), readWeights(src, true));
  return dir;
}

/** A copy split into `shards` files with a model.safetensors.index.json, as large checkpoints are stored. */
export function shardedCopy(src: string, shards: number): string {
  const dir = copyModelFolder(src, 'commvq-sharded-');
  const entries = Object.entries(readWeights(src, false));
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = entries.filter((_, i) => i % shards === s);
    writeSafetensors(join(dir, file), Object.fromEntries(part));
    for (const [name] of part) weightMap[name] = file;
  }
  writeSafetensorsIndex(dir, weightMap);
  return dir;
}

function writeSafetensorsIndex(dir: string, weightMap: Record<string, string>): void {
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

/**
 * A copy of a model folder with element `at` of one weight set to `value` (NaN, ±Infinity): a damaged checkpoint,
 * f32 as the fixtures store it or converted to bf16 first.
 *
 *   poisonedCopy(fixtureDir('tiny-llama'), 'model.layers.0.mlp.down_proj.weight', NaN)
 */
export function poisonedCopy(src: string, tensor: string, value: number, o: { bf16?: boolean; at?: number } = {}): string {
  const dir = copyModelFolder(src, 'commvq-poisoned-');
  const weights = readWeights(src, o.bf16 ?? false);
  const t = weights[tensor];
  if (!t) throw new Error(`poisonedCopy: ${src} has no tensor ${tensor}`);
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
  if (t.dtype === 'BF16') new Uint16Array(bytes.buffer)[o.at ?? 0] = f32ToBf16(value);
  else if (t.dtype === 'F32') new Float32Array(bytes.buffer)[o.at ?? 0] = value;
  else throw new Error(`poisonedCopy: ${tensor} is ${t.dtype}`);
  weights[tensor] = { ...t, data: bytes };
  writeSafetensors(join(dir, 'model.safetensors'), weights);
  return dir;
}
