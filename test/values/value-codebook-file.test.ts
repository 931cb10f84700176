/**
 * The value-codebook file: written one record batch per layer (Arrow JS reads no batch back past 2 GiB, and a 2-bit
 * Llama-8B codebook is 2.95 GB); a file of one batch holding every layer, as written before, reads the same.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FixedSizeList, Float32, Int32, makeData, RecordBatch, Struct, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { SeededRandom } from '../../src/core/model/seeded-random.js';
import { readValueCodebook, writeValueCodebook, type ValueCodebookLayer } from '../../src/core/values/value-codebook-file.js';
import { compressorShape, PARAM_NAMES, paramShapes } from '../../src/core/values/value-compressor.js';
import { expectSameBits } from '../helpers/same-bits.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-vcb-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const cpu = new CpuBackend();

describe('value codebook file', () => {
  const shape = compressorShape(1, 64);
  const shapes = paramShapes(shape);
  const rng = new SeededRandom(3);
  const layers: ValueCodebookLayer[] = [3, 0].map((layer) => ({
    layer,
    params: Object.fromEntries(PARAM_NAMES.map((p) => [p, Float32Array.from({ length: shapes[p].reduce((a, b) => a * b, 1) }, () => rng.normal())])) as ValueCodebookLayer['params'],
    scale: Float32Array.from({ length: 64 }, () => rng.uniform()),
  }));
  const path = join(work, 'value-codebook-1bit.arrow');
  writeValueCodebook(path, shape, layers, { steps: 1 });

  const expectLayers = (file: string) => {
    const read = readValueCodebook(file, cpu);
    expect([...read.layers.keys()]).toEqual([3, 0]);
    for (const l of layers) {
      const got = read.layers.get(l.layer)!;
      for (const p of PARAM_NAMES) expectSameBits(cpu.toFloat32(got.params[p]), l.params[p], `layer ${l.layer} ${p}`);
      expectSameBits(cpu.toFloat32(got.scale), l.scale, `layer ${l.layer} scale`);
    }
  };

  it('is one record batch per layer, and reads back bit for bit', () => {
    expect(tableFromIPC(readFileSync(path)).batches.map((b) => b.numRows)).toEqual([1, 1]);
    expectLayers(path);
  });

  it('reads a file of one batch holding every layer the same', () => {
    const { schema } = tableFromIPC(readFileSync(path));
    const n = layers.length;
    const columns = [
      makeData({ type: new Int32(), length: n, nullCount: 0, data: Int32Array.from(layers, (l) => l.layer) }),
      ...schema.fields.slice(1).map((f, i) => {
        const name = [...PARAM_NAMES, 'scale' as const][i]!;
        const size = (f.type as FixedSizeList).listSize;
        const flat = new Float32Array(n * size);
        layers.forEach((l, r) => flat.set(name === 'scale' ? l.scale : l.params[name], r * size));
        return makeData({ type: f.type as FixedSizeList<Float32>, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: flat.length, nullCount: 0, data: flat }) });
      }),
    ];
    const merged = new Table([new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: columns }))]);
    expect(merged.batches.map((b) => b.numRows)).toEqual([2]);
    const old = join(work, 'one-batch.arrow');
    writeFileSync(old, tableToIPC(merged, 'file'));
    expectLayers(old);
  });
});
