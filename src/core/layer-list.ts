import { OptionError } from './errors.js';

/**
 * Parses a layer selection like `0,3,8-11` (or `all`) against a model's layer count; sorted, without repeats.
 *
 *   parseLayerList('0,2-3', 32) // [0, 2, 3]
 */
export function parseLayerList(spec: string | undefined, numLayers: number): number[] {
  if (spec === undefined || spec === 'all') return Array.from({ length: numLayers }, (_, i) => i);
  const layers = new Set<number>();
  for (const part of spec.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new OptionError('layers', spec, `'${part}' is not a layer or a range like 8-11`);
    const [a, b] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (a > b || b >= numLayers) throw new OptionError('layers', spec, `${part} is outside the model's layers 0-${numLayers - 1}`);
    for (let l = a; l <= b; l++) layers.add(l);
  }
  return [...layers].sort((x, y) => x - y);
}
