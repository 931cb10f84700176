/**
 * Headless rendering of a Vega-Lite spec (the NIAH heatmap of niahHeatmapSpec) to SVG with vega + vega-lite, and
 * from that SVG to PNG with resvg, which rasterises with the system's fonts (DejaVu Sans on Debian). No browser,
 * no canvas package, no install scripts.
 *
 *   const { svg, png } = await renderVegaLite(niahHeatmapSpec(grid, { title: 'tiny-llama, dense' }));
 *   await writeVegaLite(spec, 'out/niah');   // out/niah.svg, out/niah.png
 */
import { writeFileSync } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { CommvqError } from '../errors.js';

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
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: options.scale ?? 1.5 }, font: { loadSystemFonts: true } }).render().asPng();
  return { svg, png };
}

/** Renders and writes `<base>.svg` and `<base>.png`; returns the two paths. */
export async function writeVegaLite(spec: Record<string, unknown>, base: string, options: RenderOptions = {}): Promise<{ svg: string; png: string }> {
  const { svg, png } = await renderVegaLite(spec, options);
  writeFileSync(`${base}.svg`, svg);
  writeFileSync(`${base}.png`, png);
  return { svg: `${base}.svg`, png: `${base}.png` };
}
