#!/usr/bin/env node
// Draws measure-memory's throughput plot (tokens/s against batch, one line per cache) over several reports of the same
// model and card, e.g. runs split across calls: their points and max-batch trials are merged into one report first.
//
//   npm run build && node scripts/bench/merge-throughput-plot.mjs OUT.svg a.json b.json ...
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../dist/core/io/atomic-write.js';
import { renderMemoryPlots } from '../../dist/core/memory/memory-plots.js';

const [out, ...files] = process.argv.slice(2);
if (!out || files.length === 0) {
  console.error('usage: merge-throughput-plot.mjs OUT.svg REPORT.json [REPORT.json ...]');
  process.exit(1);
}
const docs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
const doc = { ...docs[0], points: docs.flatMap((d) => d.points), max_batch: docs.flatMap((d) => d.max_batch) };
const { throughput } = await renderMemoryPlots(doc);
if (!throughput) {
  console.error('merge-throughput-plot: no timed decode in these reports');
  process.exit(1);
}
writeFileAtomic(out, [new TextEncoder().encode(throughput.svg)]);
