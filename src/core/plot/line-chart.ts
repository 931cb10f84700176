/**
 * A small line chart as standalone SVG text (no dependencies): a few series over a shared x axis, linear or log y,
 * with axes, ticks and a legend. Enough for loss curves; richer charts use a plotting library.
 *
 *   writeFileSync('loss.svg', lineChartSvg({ title: 'loss', x: 'step', y: 'MSE', logY: true, series: [{ name: 'value', points }] }));
 */
export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];

export function lineChartSvg(o: { title: string; x: string; y: string; series: Series[]; logY?: boolean; width?: number; height?: number }): string {
  const W = o.width ?? 640;
  const H = o.height ?? 400;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const all = o.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0));
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => (o.logY ? Math.log10(y) : y));
  const [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - (((o.logY ? Math.log10(y) : y) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.x)}</text>`,
    `<text x="16" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(m.t + H - m.b) / 2})">${esc(o.y)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4;
    const label = o.logY ? (10 ** yv).toExponential(1) : yv.toPrecision(3);
    const y = H - m.b - (i / 4) * (H - m.t - m.b);
    parts.push(`<line x1="${m.l - 4}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#ddd"/><text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${label}</text>`);
    const xv = x0 + ((x1 - x0) * i) / 4;
    parts.push(`<text x="${px(xv)}" y="${H - m.b + 16}" text-anchor="middle">${Number(xv.toPrecision(4))}</text>`);
  }
  o.series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0)).map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`);
    const color = COLORS[i % COLORS.length];
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
    parts.push(`<rect x="${W - m.r - 150}" y="${m.t + i * 18}" width="12" height="3" fill="${color}"/><text x="${W - m.r - 132}" y="${m.t + i * 18 + 5}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
