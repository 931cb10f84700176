/**
 * The key codebook library (spec §3–4, §6.4): θ-parametrised RoPE-commutative codebooks, the EM trainer (CPU, and
 * GPU in ./gpu, loaded on demand), the E2E refinement, the shared encoder/decoder, the Arrow file format and the
 * train-key entry point.
 *
 *   import { readKeyCodebook, encodeKeys, decodeKeys } from './core/keys/index.js';
 *   const cb = readKeyCodebook('runs/a/key-codebook-em-1bit.arrow').layers.get(0)!;
 *   const k̂ = decodeKeys(cb, encodeKeys(cb, keys));
 */
export { centresFromTheta, HALF_SIZE, LayerKeyCodebook, stageThetaSize, type KeyCodebookShape } from './codebook.js';
export { keyCodebookFileName, RESIDUALS_FOR_BITS, type Bits, type KeyMethod } from '../commvq/geometry.js';
export { CpuEmBackend } from './cpu-em.js';
export { stageTables, type StageTables } from './distance.js';
export { e2eData, e2eLoss, E2E_DEFAULTS, trainE2e, type E2eConfig, type E2eResult } from './e2e.js';
export { EM_DEFAULTS, emStage, kappaOf, streamSeed, temperature, trainGroupEm, type EmBackend, type EmConfig, type StageResult } from './em.js';
export { decodeKeys, encodeGroup, encodeKeys, stageErrors, type EncodedKeys, type StageErrors } from './encoder.js';
export { KEY_CODEBOOK_FORMAT, KEY_CODEBOOK_VERSION, readKeyCodebook, writeKeyCodebook, type KeyCodebookFile, type KeyCodebookMeta } from './format.js';
export { hfToPi, piToHf, prepareKeys, type PreparedKeys } from './layout.js';
export { solveTheta, type EStats } from './mstep.js';
export { formatKeyReport, type KeyReport, type LayerKeyReport } from './report.js';
export { trainKey, type TrainKeyOptions, type TrainKeyResult } from './train-key.js';
export { trainKeyWidths, writeNestedKeyCodebook, type KeyWidth } from './nested-codebook.js';
