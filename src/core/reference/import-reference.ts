/**
 * import-reference: the released CommVQ codebooks (spec §3.6, §5.8) into a run folder, as the trainers would have
 * written them — RUN_DIR/key-codebook-em-{b}bit.arrow (θ only), RUN_DIR/value-codebook-{b}bit.arrow — with where
 * they came from in each file's schema metadata (`commvq.source*`, the reference's final_error and per-stage
 * mse_loss, the config's CommVQ fields), and RUN_DIR/reference-import-{b}bit.json listing what was not used.
 * Everything is read and checked before anything is written: a bad input leaves the run folder as it was.
 *
 *   const r = importReference({ values: 'Llama-3.1-8B-Instruct-CommVQ-2bit', keys: 'Llama-3.1-8B-Instruct-CommVQ-2bit-codebook', out: 'runs/ref2' });
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { keyCodebookFileName, valueCodebookFileName } from '../commvq/geometry.js';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { writeKeyCodebook, type KeyCodebookMeta } from '../keys/format.js';
import { writeValueCodebook } from '../values/value-codebook-file.js';
import { commvqConfigFields } from './names.js';
import { readReferenceKeys } from './reference-keys.js';
import { readReferenceValues } from './reference-values.js';

/** What the schema metadata's `commvq.source` says for a codebook read from the reference's files. */
export const REFERENCE_SOURCE = 'commvq-reference';

export interface ImportReferenceOptions {
  /** the HF checkpoint folder holding the value compressors (Llama-3.1-8B-Instruct-CommVQ-{b}bit) */
  values: string;
  /** the key codebook folder ({ℓ:03d}_{g}.pt files) */
  keys: string;
  /** the run folder to write into (made if missing) */
  out: string;
  /** read the stored centres and refuse any that are not θ's (default: skipped; θ is all the codebook needs) */
  checkCentres?: boolean;
  /** replace codebooks of the same width already in the run folder */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface ImportReferenceResult {
  keyCodebook: string;
  valueCodebook: string;
  report: string;
  bits: number;
  layers: number;
  /** R, G, N_h, P of the key codebook; N_c value bits per token */
  residuals: number;
  groups: number;
  halfSize: number;
  pairs: number;
  codeBits: number;
  valueDtype: string;
  /** LLM tensors of the value checkpoint, not copied */
  modelTensors: number;
  centres: { checked: boolean; maxAbsError: number };
  unused: string[];
}

export function importReference(o: ImportReferenceOptions): ImportReferenceResult {
  const values = readReferenceValues(o.values);
  const { config } = values;
  const keys = readReferenceKeys(o.keys, { layers: config.numLayers, groups: config.numKvHeads, pairs: config.headDim / 2 }, { checkCentres: o.checkCentres, onFile: o.onProgress });
  const bits = values.bits;
  const keyPath = join(o.out, keyCodebookFileName('em', bits));
  const valuePath = join(o.out, valueCodebookFileName(bits));
  for (const p of [keyPath, valuePath]) {
    if (existsSync(p) && !o.force) throw new CommvqError(`${p} already exists`, 'import into another run folder, or pass --force to replace it');
  }
  const source = { source: REFERENCE_SOURCE, source_keys: resolve(o.keys), source_values: resolve(o.values) };
  const commvqFields = Object.fromEntries(Object.keys(commvqConfigFields(bits)).filter((k) => k in values.rawConfig).map((k) => [k, values.rawConfig[k]]));
  const { residuals, groups, halfSize, pairs } = keys.shape;
  const meta: KeyCodebookMeta = {
    method: 'em', bits, residuals, halfSize, pairs, headDim: config.headDim, kvHeads: groups, layout: 'PI',
    data: source.source_keys, model: source.source_values, tokens: 0, heldout: 0, seed: 0,
  };
  mkdirSync(o.out, { recursive: true });
  writeKeyCodebook(keyPath, meta, keys.layers, {
    ...source,
    source_files: String(config.numLayers * groups),
    final_error: JSON.stringify(keys.finalError),
    mse_loss: JSON.stringify(keys.mseLoss),
    centres: keys.centres.checked ? `checked against θ: max |Δ| ${keys.centres.maxAbsError}` : 'skipped (rebuilt from θ)',
  });
  writeValueCodebook(valuePath, values.shape, values.layers, {
    ...source, source_dtype: values.dtype, model: source.source_values, reference_config: JSON.stringify(commvqFields),
  });
  const result: ImportReferenceResult = {
    keyCodebook: keyPath, valueCodebook: valuePath, report: join(o.out, `reference-import-${bits}bit.json`), bits, layers: config.numLayers,
    residuals, groups, halfSize, pairs, codeBits: values.shape.codeBits, valueDtype: values.dtype, modelTensors: values.modelTensors,
    centres: keys.centres, unused: [...values.unused, ...keys.unused],
  };
  writeFileAtomic(result.report, [Buffer.from(JSON.stringify({ format: 'commvq.reference-import', version: 1, ...source, ...result, reference_config: commvqFields }, null, 1))]);
  return result;
}
