/**
 * The NIAH heatmap (viz.py): mean score per (depth, length), rows = depth, columns = length, 0–10 on the colour
 * scale #F0496E → #EBB839 → #0CD79F, x "Token Limit" (labels at −45°), y "Depth Percent". niahHeatmap computes the
 * grid; niahHeatmapSpec writes it as a Vega-Lite spec, which a renderer (vega + vega-lite, headless) turns into
 * SVG and PNG.
 *
 *   const grid = niahHeatmap(results);
 *   const spec = niahHeatmapSpec(grid, { title: 'Llama-3.1-8B-Instruct, CommVQ 2-bit' });
 */

export interface NiahHeatmapCell {
  contextLength: number;
  depthPercent: number;
  /** mean score of the results in this cell (0..10) */
  score: number;
  n: number;
}

export interface NiahHeatmap {
  lengths: number[];
  depths: number[];
  cells: NiahHeatmapCell[];
  /** [depth row][length column], null where no result exists */
  matrix: (number | null)[][];
  /** mean over the cells present */
  overall: number | null;
}

/** Mean score per cell from any number of per-cell results (reruns average, like viz.py's pivot_table). */
export function niahHeatmap(results: readonly { context_length: number; depth_percent: number; score: number }[]): NiahHeatmap {
  const acc = new Map<string, NiahHeatmapCell>();
  for (const r of results) {
    const key = `${r.context_length}/${r.depth_percent}`;
    const c = acc.get(key) ?? { contextLength: r.context_length, depthPercent: r.depth_percent, score: 0, n: 0 };
    c.score += r.score;
    c.n += 1;
    acc.set(key, c);
  }
  const cells = [...acc.values()].map((c) => ({ ...c, score: c.score / c.n }));
  cells.sort((a, b) => a.depthPercent - b.depthPercent || a.contextLength - b.contextLength);
  const lengths = [...new Set(cells.map((c) => c.contextLength))].sort((a, b) => a - b);
  const depths = [...new Set(cells.map((c) => c.depthPercent))].sort((a, b) => a - b);
  const matrix = depths.map((d) => lengths.map((l) => cells.find((c) => c.depthPercent === d && c.contextLength === l)?.score ?? null));
  const overall = cells.length === 0 ? null : cells.reduce((s, c) => s + c.score, 0) / cells.length;
  return { lengths, depths, cells, matrix, overall };
}

export const NIAH_COLORS = ['#F0496E', '#EBB839', '#0CD79F'] as const;

/**
 * A Vega-Lite (v6) spec of the heatmap: 17.5 × 8 inches at 72 px per inch like viz.py's figure, one rect per
 * cell, the score written in each cell.
 */
export function niahHeatmapSpec(grid: NiahHeatmap, options: { title?: string; width?: number; height?: number } = {}): Record<string, unknown> {
  const values = grid.cells.map((c) => ({ length: c.contextLength, depth: c.depthPercent, score: Math.round(c.score * 100) / 100 }));
  const x = { field: 'length', type: 'ordinal', title: 'Token Limit', sort: grid.lengths, axis: { labelAngle: -45 } };
  const y = { field: 'depth', type: 'ordinal', title: 'Depth Percent', sort: grid.depths };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    ...(options.title ? { title: options.title } : {}),
    width: options.width ?? 1260,
    height: options.height ?? 576,
    background: 'white',
    data: { values },
    encoding: { x, y },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: {
            field: 'score',
            type: 'quantitative',
            title: 'Score',
            scale: { domain: [0, 5, 10], range: [...NIAH_COLORS], interpolate: 'rgb' },
          },
        },
      },
      {
        mark: { type: 'text', fontSize: 11 },
        encoding: { text: { field: 'score', type: 'quantitative', format: '.1f' }, color: { value: 'black' } },
      },
    ],
    // a font a headless SVG→PNG rasteriser finds on Debian (fonts-dejavu), then the usual fallbacks
    config: { font: 'DejaVu Sans, Arial, Helvetica, sans-serif', axis: { labelFontSize: 12, titleFontSize: 14 }, view: { stroke: null } },
  };
}

/**
 * The heatmaps of several runs side by side in one Vega-Lite spec (a comparison of caches): one panel per run, in
 * the order given, `columns` to a row, sharing the 0–10 colour scale and the axes' order, each headed by its title.
 * Panels are sized to their grid (about 56 px per length, 30 per depth, at least 200 × 120) rather than viz.py's one large figure.
 *
 *   niahComparisonSpec([{ title: 'dense', grid: a }, { title: 'commvq-2bit', grid: b }], { title: 'tiny-llama · NIAH rouge1' })
 */
export function niahComparisonSpec(panels: readonly { title: string; grid: NiahHeatmap }[], options: { title?: string; columns?: number } = {}): Record<string, unknown> {
  const lengths = [...new Set(panels.flatMap((p) => p.grid.lengths))].sort((a, b) => a - b);
  const depths = [...new Set(panels.flatMap((p) => p.grid.depths))].sort((a, b) => a - b);
  const single = niahHeatmapSpec({ lengths, depths, cells: [], matrix: [], overall: null });
  const values = panels.flatMap((p) => (niahHeatmapSpec(p.grid).data as { values: object[] }).values.map((v) => ({ ...v, panel: p.title })));
  return {
    $schema: single.$schema,
    ...(options.title ? { title: options.title } : {}),
    background: 'white',
    data: { values },
    columns: options.columns ?? Math.min(panels.length, 4),
    // a title's parts (`name · bits · mean`) on lines of their own, so a long one does not widen its column
    facet: { field: 'panel', type: 'nominal', sort: panels.map((p) => p.title), title: null, header: { labelFontSize: 13, labelExpr: "split(datum.label, ' · ')" } },
    spec: {
      width: Math.max(200, 56 * lengths.length),
      height: Math.max(120, 30 * depths.length),
      encoding: single.encoding,
      layer: single.layer,
    },
    spacing: 24,
    config: single.config,
  };
}
