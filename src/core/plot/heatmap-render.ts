/**
 * Headless rendering of a Vega-Lite spec (the NIAH heatmap of niahHeatmapSpec) to SVG with vega + vega-lite, and
 * from that SVG to PNG with resvg, which rasterises with the system's fonts (DejaVu Sans on Debian). No browser,
 * no canvas package, no install scripts.
 *
 *   const { svg, png } = await renderVegaLite(niahHeatmapSpec(grid, { title: 'tiny-llama, dense' }));
 *   await writeVegaLite(spec, 'out/niah');   // out/niah.svg, out/niah.png
 */
import { readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { CommvqError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';

export interface RenderedPlot {
  svg: string;
  png: Uint8Array;
}

export interface RenderOptions {
  /** PNG pixels per SVG pixel (default 1.5) */
  scale?: number;
}

export async function renderVegaLite(spec: Record<string, unknown>, options: RenderOptions = {}): Promise<RenderedPlot> {
  // loaded on first use: the plotting stack costs a few hundred ms to import, which commands that draw nothing skip
  const [vega, vegaLite, { Resvg }] = await Promise.all([import('vega'), import('vega-lite'), import('@resvg/resvg-js')]);
  let svg: string;
  try {
    const compiled = vegaLite.compile(spec as unknown as TopLevelSpec).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
    svg = await view.toSVG();
    view.finalize();
  } catch (err) {
    throw new CommvqError(`cannot draw the plot: ${(err as Error).message}`);
  }
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: options.scale ?? 1.5 }, font: { loadSystemFonts: true, fontDirs: extraFontDirs() } }).render().asPng();
  return { svg, png };
}

/** Renders and writes `<base>.svg` and `<base>.png`; returns the two paths. */
export async function writeVegaLite(spec: Record<string, unknown>, base: string, options: RenderOptions = {}): Promise<{ svg: string; png: string }> {
  const { svg, png } = await renderVegaLite(spec, options);
  writeFileAtomic(`${base}.svg`, [Buffer.from(svg)]); // a stopped run leaves the last whole plot, never half of one
  writeFileAtomic(`${base}.png`, [png]);
  return { svg: `${base}.svg`, png: `${base}.png` };
}

/** Font folders besides the system's, from COMMVQ_FONT_DIR (a path list, like PATH). */
function extraFontDirs(): string[] {
  return (process.env.COMMVQ_FONT_DIR ?? '').split(delimiter).filter(Boolean);
}

/** Where resvg looks for fonts: COMMVQ_FONT_DIR, then the usual system and user folders. */
export function fontDirs(): string[] {
  const home = homedir();
  return [...extraFontDirs(), '/usr/share/fonts', '/usr/local/share/fonts', join(home, '.fonts'), join(home, '.local/share/fonts'), '/System/Library/Fonts', '/Library/Fonts', 'C:\\Windows\\Fonts'];
}

/**
 * resvg draws a PNG's text with the machine's fonts; a machine with none (a bare GPU node) gets PNGs without any
 * labels. Undefined when a font file is found in `dirs` (searched 4 folders deep), else a note for the user (the
 * SVGs carry their text either way).
 */
export function pngFontNote(dirs = fontDirs()): string | undefined {
  if (dirs.some((dir) => holdsFont(dir, 4))) return undefined;
  return 'no fonts on this machine: the PNG plots have no text (the SVGs do); install fonts (e.g. fonts-dejavu-core) or set COMMVQ_FONT_DIR';
}

function holdsFont(dir: string, depth: number): boolean {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  if (entries.some((e) => e.isFile() && /\.(ttf|otf|ttc)$/i.test(e.name))) return true;
  return depth > 0 && entries.some((e) => e.isDirectory() && holdsFont(join(dir, e.name), depth - 1));
}
