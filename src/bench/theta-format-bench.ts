/**
 * What a number format for the key codebook θ costs against CommVQ's own error (issue 16): on codebooks trained by the
 * pipeline on the tiny-llama fixture (collect-kv over a corpus of its reference text, make-scale, EM at 1 and 2 bits,
 * all on the CPU), the RMS of (logits with θ rounded to the format − logits with θ as trained) over the RMS of (logits
 * with θ as trained − exact logits of the unquantized keys), over 512 held-out keys per layer, averaged over isotropic
 * queries (layerRatios says how). Keys are decoded in f32 (2^-24, far below any format's step), so only θ's rounding
 * is measured: the formats a kernel could gather (f16; f16 with the remainder of the first k stages; int16 / int12 /
 * int8 fixed point with a scale per stage and pair, or one per pair over all stages). Prints one JSON object; takes a
 * few minutes.
 *
 *   npm run build && node dist/bench/theta-format-bench.js [--fixtures ../shared/fixtures] > formats.json
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend } from '../core/backend/create-backend.js';
import { LayerKeyCodebook } from '../core/keys/codebook.js';
import { decodeKeys, encodeKeys } from '../core/keys/encoder.js';
import { readKeyCodebook } from '../core/keys/format.js';
import { trainKey } from '../core/keys/train-key.js';
import { collectKv } from '../core/kv/collect-kv.js';
import { readKvRows } from '../core/kv/kv-reader.js';
import { makeScale } from '../core/kv/make-scale.js';
import { roundF16 as half } from '../core/tensor/dtype.js';

const { values: args } = parseArgs({ options: { fixtures: { type: 'string', default: process.env.COMMVQ_FIXTURES ?? '../shared/fixtures' } } });
const model = join(args.fixtures!, 'tiny-llama');
const HELD_OUT = 512;

/** θ [R, G, 2·64, P] rounded to fixed point of `bits` with one scale per (g, pair) and stage (or over all stages). */
function fixedPoint(cb: LayerKeyCodebook, bits: number, perStage: boolean): Float64Array {
  const { residuals: R, groups: G, halfSize: NH, pairs: P } = cb.shape;
  const th = cb.theta;
  const out = new Float64Array(th.length);
  const at = (r: number, g: number, i: number, j: number) => ((r * G + g) * 2 * NH + i) * P + j;
  for (let g = 0; g < G; g++) for (let j = 0; j < P; j++) {
    for (const stages of perStage ? Array.from({ length: R }, (_, r) => [r]) : [Array.from({ length: R }, (_, r) => r)]) {
      let max = 0;
      for (const r of stages) for (let i = 0; i < 2 * NH; i++) max = Math.max(max, Math.abs(th[at(r, g, i, j)]!));
      const q = max > 0 ? (2 ** (bits - 1) - 1) / max : 1;
      for (const r of stages) for (let i = 0; i < 2 * NH; i++) out[at(r, g, i, j)] = Math.round(th[at(r, g, i, j)]! * q) / q;
    }
  }
  return out;
}

/** f16 θ, with the first `exact` stages carried as f16 + f16 of the remainder. */
function f16Theta(cb: LayerKeyCodebook, exact: number): Float64Array {
  const stage = cb.theta.length / cb.shape.residuals;
  return Float64Array.from(cb.theta, (x, k) => (k < exact * stage ? half(x) + half(x - half(x)) : half(x)));
}

/**
 * Logit error of each format over the quantization error, one layer, as the mean over isotropic queries: for the D_h
 * unit queries e_k, Σ_k (e_k·δ)² = ‖δ‖², and RoPE turns each pair without changing its length, so the sum of squared
 * logit errors over those queries is the squared norm of the key error — computed here on the keys directly. (A few
 * random queries scatter the ratio: 4 Gaussian ones put f16 + stage 0's remainder anywhere from 0.35% to 2.3% at 2 bits
 * on one codebook.)
 */
function layerRatios(cb: LayerKeyCodebook, keys: Float32Array): Record<string, number> {
  const enc = encodeKeys(cb, keys);
  const formats: Record<string, Float64Array> = {
    f16: f16Theta(cb, 0), 'f16+remainder of stage 0': f16Theta(cb, 1), 'f16+remainder of stages 0-1': f16Theta(cb, 2),
    'f16+remainder of stages 0-3': f16Theta(cb, 4), 'int16 per pair': fixedPoint(cb, 16, false),
    'int16 per stage and pair': fixedPoint(cb, 16, true), 'int12 per stage and pair': fixedPoint(cb, 12, true),
    'int8 per stage and pair': fixedPoint(cb, 8, true),
  };
  // decodeKeys works in f32: θ and sums move by ~2^-24 relative, far below the coarsest step measured (f16's 2^-11
  // on every stage past the first)
  const quantized = decodeKeys(cb, enc); // [N, G·D_h], HF layout
  const squaredDistance = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, i) => sum + (x - b[i]!) ** 2, 0);
  const method = squaredDistance(quantized, keys);
  return Object.fromEntries(Object.entries(formats).map(([name, theta]) => {
    const rounded = decodeKeys(new LayerKeyCodebook(cb.shape, Float32Array.from(theta)), enc);
    return [name, Math.sqrt(squaredDistance(rounded, quantized) / method)];
  }));
}

const cpu = await createBackend('cpu');
const work = mkdtempSync(join(tmpdir(), 'commvq-theta-format-'));
try {
  const corpus = join(work, 'corpus.jsonl');
  const words = (JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8')) as { prompts: string[] }).prompts[1]!.split(' ');
  writeFileSync(corpus, Array.from({ length: 160 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 60).join(' ') })).join('\n'));
  await collectKv({ modelDir: model, corpus, runDir: work, backend: cpu, tokens: 40 * 128, seqLen: 128 });
  makeScale(work);
  const results: Record<string, unknown>[] = [];
  for (const bits of [1, 2] as const) {
    const file = readKeyCodebook((await trainKey({ runDir: work, method: 'em', bits, tokens: 4096, heldout: HELD_OUT, backend: cpu })).codebook);
    for (const [layer, cb] of file.layers) {
      const { rows, tokens } = readKvRows(work, 'key', layer);
      const keys = rows.subarray((tokens - HELD_OUT) * cb.headDim * cb.shape.groups); // after the training read
      results.push({ bits, layer, residuals: cb.shape.residuals, ratios: layerRatios(cb, keys) });
    }
  }
  console.log(JSON.stringify({ date: new Date().toISOString(), model: 'tiny-llama', heldOut: HELD_OUT, results }, null, 1));
} finally {
  rmSync(work, { recursive: true, force: true });
}
