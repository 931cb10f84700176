/**
 * The manifest of a perplexity run (OUT/manifest.json, format `commvq.perplexity`): what must be equal for a rerun to
 * continue the folder (model, corpus tokens, context, stride) and every cache scored into it. A rerun with other
 * windows is refused, naming the first difference; a cache label keeps the description it was scored with; a new cache
 * joins the folder.
 *
 *   const m = openPerplexityManifest('runs/ppl/manifest.json', identity, { modelDir, data }, factories);
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CacheDescription, CacheFactory } from '../../cache-factory.js';
import { CommvqError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { evalVersions, firstDifference, type ModelIdentity } from '../run/manifest.js';

export const PERPLEXITY_FORMAT = 'commvq.perplexity';

export interface PerplexityManifest {
  format: typeof PERPLEXITY_FORMAT;
  version: 1;
  /** what must be equal for a rerun to continue the folder */
  identity: { model: ModelIdentity; corpus: { tokens: number; hash: string; field: string }; context: number; stride: number };
  model_dir: string;
  data: string;
  /** label → description of every cache scored into this folder */
  caches: Record<string, CacheDescription>;
  versions: Record<string, string>;
}

/** Checks a folder's earlier manifest (same model, corpus tokens, context, stride; a cache label keeps its description) and writes the new one. */
export function openPerplexityManifest(path: string, identity: PerplexityManifest['identity'], o: { modelDir: string; data: string }, factories: readonly CacheFactory[]): PerplexityManifest {
  let caches: Record<string, CacheDescription> = {};
  if (existsSync(path)) {
    const found = JSON.parse(readFileSync(path, 'utf8')) as PerplexityManifest;
    if (found?.format !== PERPLEXITY_FORMAT) throw new CommvqError(`${path}: not a perplexity run's manifest`, 'use another --out folder');
    const show = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(v));
    const hint = 'rerun with the settings of that run to resume it, or use another --out folder';
    const d = firstDifference(found.identity, identity);
    if (d) throw new CommvqError(`${path} is a different run: ${d.path} is ${show(d.a)} there, ${show(d.b)} here`, hint);
    for (const f of factories) {
      const had = found.caches[f.description.label];
      const dc = had && firstDifference(had, f.description);
      if (dc) throw new CommvqError(`${path}: cache ${f.description.label} was scored with ${dc.path} ${show(dc.a)}, here ${show(dc.b)}`, hint);
    }
    caches = found.caches;
  }
  const manifest: PerplexityManifest = {
    format: PERPLEXITY_FORMAT,
    version: 1,
    identity,
    model_dir: o.modelDir,
    data: o.data,
    caches: { ...caches, ...Object.fromEntries(factories.map((f) => [f.description.label, f.description])) },
    versions: evalVersions(),
  };
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, [Buffer.from(JSON.stringify(manifest, null, 1) + '\n')]);
  return manifest;
}
