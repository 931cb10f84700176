import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { CommvqError } from '../errors.js';
import { readKeyCodebook } from '../keys/format.js';
import type { LlamaModel } from '../model/llama.js';
import { readValueCodebook } from '../values/value-codebook-file.js';
import { CommvqCache, type CommvqCacheOptions } from './commvq-cache.js';

/** The trained codebooks a CommVQ cache needs, read once and shared by every cache made from them. */
export type CommvqCodebooks = Pick<CommvqCacheOptions, 'keys' | 'values' | 'valueShape'> & { keyPath: string; valuePath: string; bits: { key: number; value: number } };

/**
 * Reads a key codebook (commvq train-key) and a value codebook (commvq train-value), checking that they fit the
 * model: every layer present, KV heads and head dim as the model has them.
 *
 *   const books = loadCommvqCodebooks(model, 'runs/a/key-codebook-em-1bit.arrow', 'runs/a/value-codebook-1bit.arrow');
 */
export function loadCommvqCodebooks(model: LlamaModel, keyPath: string, valuePath: string): CommvqCodebooks {
  const c = model.config;
  const key = readKeyCodebook(keyPath);
  if (key.meta.kvHeads !== c.numKvHeads || key.meta.headDim !== c.headDim) {
    throw new CommvqError(`${keyPath}: made for ${key.meta.kvHeads} KV heads of ${key.meta.headDim}, the model has ${c.numKvHeads} of ${c.headDim}`);
  }
  const value = readValueCodebook(valuePath, new CpuBackend()); // the host reference cache computes on the CPU
  if (value.shape.featDim !== c.numKvHeads * c.headDim) throw new CommvqError(`${valuePath}: made for values of ${value.shape.featDim} channels, the model's have ${c.numKvHeads * c.headDim}`);
  for (let l = 0; l < c.numLayers; l++) {
    if (!key.layers.has(l)) throw new CommvqError(`${keyPath}: no codebook for layer ${l}`, 'train every layer: commvq train-key RUN_DIR --layers all');
    if (!value.layers.has(l)) throw new CommvqError(`${valuePath}: no compressor for layer ${l}`, 'train every layer: commvq train-value RUN_DIR ...');
  }
  return { keys: key.layers, values: value.layers, valueShape: value.shape, keyPath, valuePath, bits: { key: key.meta.bits, value: value.shape.bits } };
}

/**
 * A CommVQ cache for `model` on its backend: in device memory on a GPU, the host reference elsewhere.
 *
 *   const cache = createCommvqCache(model, books, { capacity: 32768, batch: 8, prefill: 'strict' });
 */
export function createCommvqCache(
  model: LlamaModel,
  books: CommvqCodebooks,
  o: Pick<CommvqCacheOptions, 'capacity' | 'prefill' | 'window' | 'sinks' | 'valueEncoding' | 'batch'>,
): CommvqCache {
  return new CommvqCache(model.backend, model.cacheShape, { ...books, rope: model.rope, ...o });
}
