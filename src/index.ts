/**
 * commvq as a library: load a Hugging Face model folder onto a backend, run forward passes with an observable KV
 * cache, and generate.
 *
 *   import { createBackend, loadModel, generateGreedy } from 'commvq';
 *   const { model, tokenizer, eosTokenIds } = loadModel('tiny-llama', { backend: await createBackend('auto') });
 *   const { outputIds } = generateGreedy(model, tokenizer.encode('Hello'), { maxNewTokens: 16, eosTokenIds });
 */
export type { AttentionShape, Backend, RopeTable } from './core/backend/backend.js';
export { CpuBackend } from './core/backend/cpu/cpu-backend.js';
export { createBackend, parseDevice, type DeviceSpec } from './core/backend/create-backend.js';
export { CommvqError, OptionError } from './core/errors.js';
export { CACHE_KINDS, cacheFolderName, cacheSpecText, COMMVQ_DEFAULTS, resolveCacheSpec, type CacheSpec, type CommvqCacheSpec, type DenseCacheSpec } from './core/cache-spec.js';
export { cacheRunsOn, checkCachesOnDevice } from './core/cache-device.js';
export { openCacheFactory, type CacheDescription, type CacheFactory } from './core/cache-factory.js';
export { BIT_WIDTHS, commvqGeometry, DEFAULT_WINDOW, keyCodebookFileName, RESIDUALS_FOR_BITS, toBits, valueCodebookFileName, type Bits, type CommvqGeometry } from './core/commvq/geometry.js';
export { generateText, type GenerateTextOptions, type GenerateTextResult } from './core/generate-text.js';
export { SafetensorsCheckpoint, SafetensorsFile, writeSafetensors, type TensorInfo } from './core/io/safetensors.js';
export { RunLock, RunLockedError, withRunLock, type LockOwner, type RunLockOptions } from './core/io/run-lock.js';
export { parseModelConfig, SUPPORTED_ARCHITECTURES, type ModelConfig, type RopeConfig } from './core/model/config.js';
export { DEMO_CONFIG, writeDemoModel } from './core/model/demo-model.js';
export { generateGreedy, type GenerateOptions, type GenerateResult } from './core/model/generate.js';
export { DenseKVCache, type CacheShape, type KVCache } from './core/model/kv-cache.js';
export { LlamaModel, type ForwardOptions, type KVObserver, type LayerKV } from './core/model/llama.js';
export { loadModel, type LoadedModel, type LoadModelOptions } from './core/model/load-model.js';
export { ropeTable } from './core/model/rope.js';
export { DTYPES, type DType } from './core/tensor/dtype.js';
export { TensorScope, type Tensor } from './core/tensor/tensor.js';
export { TextTokenizer, type ChatMessage } from './core/tokenizer/text-tokenizer.js';
export * from './core/keys/index.js';
export { CommvqCache, type CommvqCacheOptions, type PrefillMode } from './core/commvq/commvq-cache.js';
export { createCommvqCache, findRunCodebooks, loadCommvqCodebooks, type CommvqCodebooks } from './core/commvq/load-commvq.js';
export { measureMemory, openMemoryProbe, type MemoryPlan, type MemoryMeasurement, type ProbeOptions } from './core/memory/measure-memory.js';
export { runMeasureMemory, type MeasureMemoryRunOptions } from './core/memory/run-measure-memory.js';
export type { MemoryPointResult, MemoryPointSpec, MemoryProbe } from './core/memory/memory-probe.js';
export { runPipeline } from './core/pipeline/run-pipeline.js';
export { collectKv, type CollectKvOptions, type CollectKvSummary } from './core/kv/collect-kv.js';
export { collectKvOnRanks } from './core/kv/collect-kv-ranks.js';
export { makeScale, readScales } from './core/kv/make-scale.js';
export { readKvRows, KvFile } from './core/kv/kv-reader.js';
export { trainValue, type TrainValueOptions, type TrainValueResult } from './core/values/train-value.js';
export { SingleProcess, type Collective } from './core/parallel/collective.js';
export { openCollective } from './core/parallel/open-collective.js';
export { distEnv, type DistEnv } from './core/parallel/dist-env.js';
export { Rendezvous, type RendezvousOptions } from './core/parallel/rendezvous.js';
export { startJob, failureLine, type LaunchOptions, type LaunchResult, type Job } from './core/parallel/launcher.js';
export * from './core/eval/index.js';
