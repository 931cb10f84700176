/**
 * `commvq train-key` end to end on the CPU, on keys that collect-kv gathers from the built-in demo model (head_dim 64,
 * 32 RoPE pairs) over a corpus made here: the codebook file and report, and bad input refused with one line each.
 * Sizes are the smallest that train 4096 centres: one layer, R = 2, two EM iterations.
 */
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { kvSchema, type KvFileMetadata } from '../../src/core/kv/kv-format.js';
import { KvFile } from '../../src/core/kv/kv-reader.js';
import { KvStreamWriter } from '../../src/core/kv/kv-writer.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { f32ToF16 } from '../../src/core/tensor/dtype.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-trainkey-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const good = join(work, 'run');
const fast = ['--residuals', '2', '--em-steps', '2', '--layers', '1', '--heldout', '512', '--device', 'cpu'];

/** A run of the demo model over generated essays: 10 windows of 512 tokens. */
async function collect(runDir: string, tokens: number): Promise<void> {
  const demo = join(work, 'demo');
  writeDemoModel(demo);
  const corpus = join(work, 'essays.jsonl');
  const words = ['keys', 'rotate', 'codebook', 'attention', 'residual', 'quantize', 'commute', 'vector', 'the', 'a', 'of'];
  const essay = (i: number) => Array.from({ length: 300 }, (_, k) => words[(i * 7 + k * k) % words.length]).join(' ');
  writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `Essay ${i}. ${essay(i)}` })).join('\n'));
  await collectKv({ modelDir: demo, corpus, runDir, backend: new CpuBackend(), tokens, seqLen: 512, seed: 1 });
}

/** A copy of the good run whose layer-1 key file is rewritten by `edit` (metadata and/or values). */
async function rewritten(name: string, edit: { meta?: Partial<KvFileMetadata> | Record<string, unknown>; x?: (x: Uint16Array, window: number) => void }): Promise<string> {
  const dir = join(work, name);
  cpSync(good, dir, { recursive: true });
  const file = KvFile.open(dir, 'key', 1);
  const batches = [...file.batches()];
  const writer = await KvStreamWriter.open(file.path, kvSchema({ ...file.meta, ...edit.meta } as KvFileMetadata), undefined);
  for (const [w, b] of batches.entries()) {
    const x = new Uint16Array(b.getChild('x')!.data[0]!.children[0]!.values as Uint16Array);
    edit.x?.(x, w);
    await writer.appendWindow(w, b.getChild('token')!.toArray() as Int32Array, x);
  }
  await writer.finish();
  return dir;
}

function expectTrainKeyError(args: string[], pattern: RegExp): void {
  expectOneLineError(runCli(['train-key', ...args]), pattern);
}

beforeAll(async () => {
  await collect(good, 5120);
});

describe('train-key', () => {
  it('trains layer 1 by EM: codebook file and a JSON report with per-stage held-out errors', () => {
    const r = runCli(['train-key', good, '--method', 'em', '--bits', '1', ...fast, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ method: 'em', bits: 1, residuals: 2, seed: 42, device: 'cpu' }); // the default seed, as every command's
    const layer = report.layers[0];
    expect(layer).toMatchObject({ layer: 1, train_tokens: 4608, heldout_tokens: 512 });
    expect(layer.relative_error).toHaveLength(2);
    expect(layer.relative_error[1]).toBeLessThan(layer.relative_error[0]);
    expect(layer.relative_error[0]).toBeLessThan(1);
    expect(layer.groups[0].relative_error).toEqual(layer.relative_error); // one KV head
    expect(layer.em.steps[0]).toEqual([2, 2]);
    const file = readKeyCodebook(join(good, 'key-codebook-em-1bit.arrow'));
    expect(file.meta).toMatchObject({ method: 'em', bits: 1, residuals: 2, halfSize: 64, pairs: 32, headDim: 64, kvHeads: 1, tokens: 1 << 20, seed: 42 });
    expect(file.layers.get(1)!.centres(1, 0)).toHaveLength(4096 * 64);
    expect(JSON.parse(readFileSync(join(good, 'key-codebook-em-1bit.report.json'), 'utf8')).layers[0].relative_error).toEqual(layer.relative_error);
  });

  it('trains 1 and 2 bits from one EM run: the 1-bit codebook is the first stages of the 2-bit one', () => {
    const dir = join(work, 'widths');
    cpSync(good, dir, { recursive: true });
    const r = runCli(['train-key', dir, '--method', 'em', '--bits', '1,2', '--residuals', '2,3', '--em-steps', '2', '--layers', '1', '--heldout', '512', '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const [one, two] = JSON.parse(r.stdout) as { bits: number; residuals: number; layers: { relative_error: number[] }[] }[];
    expect([one!.bits, one!.residuals, two!.bits, two!.residuals]).toEqual([1, 2, 2, 3]);
    expect(one!.layers[0]!.relative_error).toEqual(two!.layers[0]!.relative_error.slice(0, 2));
    const small = readKeyCodebook(join(dir, 'key-codebook-em-1bit.arrow'));
    const large = readKeyCodebook(join(dir, 'key-codebook-em-2bit.arrow'));
    expect(small.meta).toMatchObject({ bits: 1, residuals: 2 });
    expect(small.layers.get(1)!.theta).toEqual(large.layers.get(1)!.truncate(2).theta);
    expect(JSON.parse(readFileSync(join(dir, 'key-codebook-em-1bit.report.json'), 'utf8')).derived_from).toBe(join(dir, 'key-codebook-em-2bit.arrow'));
  });

  it('refines by E2E from the EM solution, printing the table and writing both results to the report', () => {
    const r = runCli(['train-key', good, '--method', 'e2e', '--bits', '2', ...fast, '--epochs', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/key codebook \(e2e, 2-bit, R = 2, seed 42, cpu\): held-out relative error/);
    expect(r.stdout).toMatch(/\| 1 +\| 4608 \/ 512 +\|.*\| [0-9.]+ +\|$/m); // the layer row ends with E2E / EM
    const layer = JSON.parse(readFileSync(join(good, 'key-codebook-e2e-2bit.report.json'), 'utf8')).layers[0];
    expect(layer.e2e.em_relative_error).toHaveLength(2);
    expect(layer.e2e.valid_loss).toHaveLength(2);
    expect(layer.e2e.ratio).toBeCloseTo(layer.relative_error[1] / layer.e2e.em_relative_error[1], 10);
    expect(readKeyCodebook(join(good, 'key-codebook-e2e-2bit.arrow')).meta.method).toBe('e2e');
  });
});

describe('train-key refuses bad input with one line', () => {
  it('a folder without collected keys', () => expectTrainKeyError([join(work, 'nothing'), ...fast], /nothing: not a collected run/));

  it('a run whose key file is missing', () => {
    const dir = join(work, 'no-keys');
    cpSync(good, dir, { recursive: true });
    rmSync(join(dir, 'kv', 'key-L001.arrows'));
    expectTrainKeyError([dir, ...fast], /no-keys: no collected keys for layer 1/);
  });

  it('values passed as keys', () => {
    const dir = join(work, 'values');
    cpSync(good, dir, { recursive: true });
    copyFileSync(join(dir, 'kv', 'value-L001.arrows'), join(dir, 'kv', 'key-L001.arrows'));
    expectTrainKeyError([dir, ...fast], /key-L001\.arrows: holds values, not keys/);
  });

  it('post-RoPE keys', async () => {
    const dir = await rewritten('post-rope', { meta: { rope: 'post' } });
    expectTrainKeyError([dir, ...fast], /keys are post-RoPE/);
  });

  it('NaN in the keys', async () => {
    const dir = await rewritten('nan', { x: (x, w) => w === 3 && (x[5 * 64 + 2] = f32ToF16(NaN)) });
    expectTrainKeyError([dir, ...fast], /nan: layer 1 keys: token 1541 holds NaN or infinite values/);
  });

  it('too few tokens for the 4096 centres', async () => {
    const dir = join(work, 'small');
    await collect(dir, 2048);
    expectTrainKeyError([dir, ...fast], /small: layer 1 keys: 2048 collected tokens are too few/);
  });

  it('bit widths other than 1, 2 or 1,2, or residuals that do not match them', () => {
    expectTrainKeyError([good, '--bits', '3', '--device', 'cpu'], /--bits 3: CommVQ bit widths are 1 and 2/);
    expectTrainKeyError([good, '--bits', '1,2', '--residuals', '4', '--device', 'cpu'], /--residuals 4: expected 2 positive integer\(s\), one per --bits width/);
  });
});
