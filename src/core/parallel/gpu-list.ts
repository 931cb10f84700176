import { OptionError } from '../errors.js';

/**
 * A list of GPU ordinals as `--gpus` takes it: ranges and single ordinals joined by commas, each GPU once.
 *
 *   parseGpuList('0-3,6')  // [0, 1, 2, 3, 6]
 */
export function parseGpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new OptionError('gpus', text, `"${part}" is not a GPU ordinal or a range like 0-7`);
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last < first) throw new OptionError('gpus', text, `the range ${part} runs backwards`);
    for (let g = first; g <= last; g++) {
      if (out.includes(g)) throw new OptionError('gpus', text, `GPU ${g} is listed twice`);
      out.push(g);
    }
  }
  return out;
}
