import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CpuBackend } from '../backend/cpu/cpu-backend.js';
import { CommvqError } from '../errors.js';
import { readKeyCodebook } from '../keys/format.js';
import type { LlamaModel } from '../model/llama.js';
import { readValueCodebook } from '../values/value-codebook-file.js';
import { checkCodebooks, CommvqCache, type CommvqCacheOptions } from './commvq-cache.js';
import { keyCodebookFileName, valueCodebookFileName, type Bits, type KeyMethod } from './geometry.js';

/** The trained codebooks a CommVQ cache needs, read once and shared by every cache made from them. */
export type CommvqCodebooks = Pick<CommvqCacheOptions, 'keys' | 'values' | 'valueShape'> & { keyPath: string; valuePath: string; bits: { key: number; value: number } };

/**
 * Reads a key codebook (commvq train-key) and a value codebook (commvq train-value), checking that they fit the
 * model: every layer present, KV heads and head dim as the model has them.
 *
 *   const books = loadCommvqCodebooks(model, 'runs/a/key-codebook-em-1bit.arrow', 'runs/a/value-codebook-1bit.arrow');
 *
 * `model` is a loaded model, or `{ cacheShape: cacheShapeOf(config) }` where only its config is at hand
 * (measure-memory's byte accounting), so both are checked by the same rules.
 */
export function loadCommvqCodebooks(model: Pick<LlamaModel, 'cacheShape'>, keyPath: string, valuePath: string): CommvqCodebooks {
  requireCodebookFiles(keyPath, valuePath);
  const key = readKeyCodebook(keyPath);
  const value = readValueCodebook(valuePath, new CpuBackend()); // the host reference cache computes on the CPU
  const books = { keys: key.layers, values: value.layers, valueShape: value.shape };
  checkCodebooks(model.cacheShape, books, { key: keyPath, value: valuePath });
  return { ...books, keyPath, valuePath, bits: { key: key.meta.bits, value: value.shape.bits } };
}

/**
 * The codebooks a cache spec names (`key=`, `value=`, and `bits=` if given), loaded and checked as every command
 * checks them: generate and the evals (openCacheFactory) and measure-memory. `bits=` says what both files must hold.
 *
 *   loadSpecCodebooks(model, { key: 'k.arrow', value: 'v.arrow', bits: 1 })
 */
export function loadSpecCodebooks(model: Pick<LlamaModel, 'cacheShape'>, spec: { key: string; value: string; bits?: number }): CommvqCodebooks {
  const books = loadCommvqCodebooks(model, spec.key, spec.value);
  if (spec.bits === undefined) return books;
  for (const [what, path, bits] of [['key', books.keyPath, books.bits.key], ['value', books.valuePath, books.bits.value]] as const) {
    if (bits !== spec.bits) throw new CommvqError(`${path}: a ${bits}-bit ${what} codebook, not the ${spec.bits}-bit one the cache asks for`);
  }
  return books;
}

/** Refuses a codebook file that is not there, with the one message every command gives for it. */
export function requireCodebookFiles(keyPath: string, valuePath: string): void {
  if (!existsSync(keyPath)) throw new CommvqError(`${keyPath}: key codebook not found`, 'train one with commvq train-key RUN_DIR');
  if (!existsSync(valuePath)) throw new CommvqError(`${valuePath}: value codebook not found`, 'train one with commvq train-value RUN_DIR');
}

/** Where the trainers' key codebooks are looked for in a run folder, in this order. */
const RUN_KEY_METHODS: readonly KeyMethod[] = ['em', 'e2e'];

/**
 * The codebook files of one bit width in a run folder, as train-key and train-value name them: the EM key codebook
 * (else the E2E one) and the value codebook.
 *
 *   findRunCodebooks('runs/a', 1)   // { key: 'runs/a/key-codebook-em-1bit.arrow', value: 'runs/a/value-codebook-1bit.arrow' }
 */
export function findRunCodebooks(run: string, bits: Bits): { key: string; value: string } {
  if (!existsSync(run) || !statSync(run).isDirectory()) throw new CommvqError(`${run}: run folder not found`);
  const key = RUN_KEY_METHODS.map((m) => join(run, keyCodebookFileName(m, bits))).find((p) => existsSync(p));
  const value = join(run, valueCodebookFileName(bits));
  if (!key) throw new CommvqError(`${run}: no ${bits}-bit key codebook (${keyCodebookFileName('em', bits)})`, `train it with commvq train-key ${run} --bits ${bits}`);
  if (!existsSync(value)) throw new CommvqError(`${run}: no ${bits}-bit value codebook (${valueCodebookFileName(bits)})`, `train it with commvq train-value ${run} --bits ${bits}`);
  return { key, value };
}

/**
 * A CommVQ cache for `model` on its backend: in device memory on a GPU, the host reference elsewhere.
 *
 *   const cache = createCommvqCache(model, books, { capacity: 32768, batch: 8, prefill: 'strict' });
 */
export function createCommvqCache(
  model: LlamaModel,
  books: CommvqCodebooks,
  o: Pick<CommvqCacheOptions, 'capacity' | 'prefill' | 'window' | 'sinks' | 'valueEncoding' | 'batch' | 'timePhases' | 'compress'>,
): CommvqCache {
  return new CommvqCache(model.backend, model.cacheShape, { ...books, rope: model.rope, ...o });
}
