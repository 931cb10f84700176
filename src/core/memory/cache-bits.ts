/**
 * The CommVQ paper's "average bits" of any cache: bits per stored K/V value of the codes and their scales, the exact
 * recent tokens (CommVQ's window, KIVI's residual, the int caches' decode tokens) left out, as the paper counts
 * KIVI-2 at 3.00 and CommVQ-2 at 2.00. Dense is its dtype's width (f32 on the CPU backend, bf16 on the GPU). One
 * number per cache for a comparison table, from the bytes per token measure-memory prices it at (cache-cost.ts).
 *
 *   await cacheAverageBits({ kind: 'kivi', bits: 2 }, { numLayers: 32, kvHeads: 8, headDim: 128 }, 'bf16')   // 3
 *   await cacheAverageBits({ kind: 'commvq', key: 'k.arrow', value: 'v.arrow' }, g, 'bf16')                   // R and N_c from the files
 */
import type { CacheSpec } from '../cache-spec.js';
import type { CompressTarget } from '../commvq/commvq-cache.js';
import { commvqGeometry, DEFAULT_WINDOW, type CommvqGeometry } from '../commvq/geometry.js';
import { readKeyCodebookMeta } from '../keys/format.js';
import type { DType } from '../tensor/dtype.js';
import { readValueCodebookShape } from '../values/value-codebook-file.js';
import { averageBits, type CacheGeometry } from './cache-accounting.js';
import { cacheBytesPerToken } from './cache-cost.js';

/**
 * Average bits of a resolved spec (resolveCacheSpec: a CommVQ spec names its codebook files, or has bits alone for
 * random codebooks of the standard geometry) for a model of geometry `g` whose exact values are `exactDtype`.
 */
export async function cacheAverageBits(spec: CacheSpec, g: CacheGeometry, exactDtype: DType): Promise<number> {
  const commvq = spec.kind === 'commvq' ? await codebookGeometry(spec, g) : undefined;
  const { bits, group, compress } = spec as { bits?: number; group?: number; compress?: CompressTarget }; // those of them the kind has
  return averageBits(g, cacheBytesPerToken(g, { cache: spec.kind, bits, group, compress }, commvq, exactDtype));
}

/** R and N_c from the codebook files' footers (a file may hold another R than its width's standard one), else the standard geometry. */
async function codebookGeometry(spec: Extract<CacheSpec, { kind: 'commvq' }>, g: CacheGeometry): Promise<CommvqGeometry> {
  if (spec.key === undefined || spec.value === undefined) return commvqGeometry(spec.bits ?? 1, g.kvHeads * g.headDim);
  const [key, value] = await Promise.all([readKeyCodebookMeta(spec.key), readValueCodebookShape(spec.value)]);
  return { residuals: key.residuals, codeBits: value.codeBits, window: DEFAULT_WINDOW };
}
