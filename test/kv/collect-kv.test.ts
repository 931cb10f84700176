/**
 * collect-kv and make-scale end to end on the CPU: parity of the collected keys and values with transformers,
 * make-scale against a direct recomputation, resume after a crash or Ctrl-C giving identical files, bad input.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { collectKv, type CollectKvOptions } from '../../src/core/kv/collect-kv.js';
import { kvSchema } from '../../src/core/kv/kv-format.js';
import { KvFile, readKvRows } from '../../src/core/kv/kv-reader.js';
import { KvStreamWriter, writeAllBytes } from '../../src/core/kv/kv-writer.js';
import { makeScale } from '../../src/core/kv/make-scale.js';
import { readManifest } from '../../src/core/kv/run-manifest.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { f32ToF16 } from '../../src/core/tensor/dtype.js';
import { compareArrays } from '../helpers/compare.js';
import { runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-collect-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const demo = join(work, 'demo');
writeDemoModel(demo);
const corpus = join(work, 'essays.jsonl');
writeFileSync(corpus, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `Essay ${i}. ` + 'The quick brown fox jumps. '.repeat(3 + (i % 5)) })).join('\n'));

const base = (runDir: string, extra: Partial<CollectKvOptions> = {}): CollectKvOptions => ({
  modelDir: demo, corpus, runDir, backend: new CpuBackend(), tokens: 4 * 64, seqLen: 64, seed: 5, ...extra,
});

/** A digest of every file a run wrote under kv/. */
function kvBytes(runDir: string): Record<string, string> {
  const dir = join(runDir, 'kv');
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));
}

describe.skipIf(!haveFixtures)('collected keys and values equal transformers', () => {
  it('for a corpus of one document: pre-RoPE keys and values within 1e-3 after Float16, token ids equal', async () => {
    const ref = new FixtureReference('tiny-llama');
    const ids = ref.ids('ids.1');
    const oneDoc = join(work, 'one.jsonl');
    writeFileSync(oneDoc, JSON.stringify({ text: ref.prompts[1] }) + '\n');
    const runDir = join(work, 'fixture-run');
    // this tokenizer adds no BOS; the window is the document's ids (its trailing EOS is the dropped tail)
    const summary = await collectKv({ modelDir: fixtureDir('tiny-llama'), corpus: oneDoc, runDir, backend: new CpuBackend(), tokens: ids.length, seqLen: ids.length });
    expect(summary).toMatchObject({ complete: true, windowsDone: 1, layers: [0, 1] });
    for (const layer of [0, 1]) {
      const keys = readKvRows(runDir, 'key', layer);
      expect(compareArrays(keys.rows, ref.f32(`k_pre.1.${layer}`), 1e-3, 2 ** -11).ok, `keys layer ${layer}`).toBe(true);
      const values = readKvRows(runDir, 'value', layer);
      expect(compareArrays(values.rows, ref.f32(`v.1.${layer}`), 1e-3, 2 ** -11).ok, `values layer ${layer}`).toBe(true);
    }
    const batch = [...KvFile.open(runDir, 'key', 0).batches()][0]!;
    expect(Array.from(batch.getChild('token')!.toArray() as Int32Array)).toEqual(ids);
  });
});

describe('collect-kv', () => {
  it('writes self-describing Arrow streams and a manifest; make-scale equals a direct recomputation', async () => {
    const runDir = join(work, 'run');
    const summary = await collectKv(base(runDir));
    expect(summary).toMatchObject({ complete: true, windowsDone: 4, tokensPerLayer: 256 });
    const table = tableFromIPC(readFileSync(join(runDir, 'kv', 'key-L001.arrows')));
    expect(table.numRows).toBe(256);
    expect(Object.fromEntries(table.schema.metadata)).toMatchObject({
      'commvq.format': 'commvq.kv', 'commvq.kind': 'key', 'commvq.layer': '1', 'commvq.layout': 'HF', 'commvq.rope': 'pre', 'commvq.dtype': 'f16', 'commvq.seqLen': '64',
    });
    expect(Array.from(table.getChild('pos')!.toArray() as Int32Array).slice(62, 66)).toEqual([62, 63, 0, 1]);

    const { layers, path } = makeScale(runDir);
    for (const { kind, layer, scale, tokens } of layers) {
      const { rows, width } = readKvRows(runDir, kind, layer);
      const direct = new Float64Array(width);
      for (let i = 0; i < rows.length; i++) direct[i % width] += Math.abs(rows[i]!);
      expect(tokens).toBe(256);
      expect(compareArrays(scale, Float32Array.from(direct, (s) => s / 256), 1e-6, 1e-6).ok, `${kind} ${layer}`).toBe(true);
    }
    const scaleTable = tableFromIPC(readFileSync(path));
    expect(scaleTable.numRows).toBe(4); // key and value × 2 layers
    expect(scaleTable.schema.metadata.get('commvq.format')).toBe('commvq.scale');
  });

  it('make-scale skips windows holding NaN or only zeros, and reports them', async () => {
    const runDir = join(work, 'nan-run');
    await collectKv(base(runDir));
    // rewrite layer 0's keys: window 1 gets a NaN, window 2 becomes all zeros
    const good = KvFile.open(runDir, 'key', 0);
    const batches = [...good.batches()];
    const writer = await KvStreamWriter.open(good.path, kvSchema(good.meta), undefined);
    for (const [w, b] of batches.entries()) {
      const x = new Uint16Array(b.getChild('x')!.data[0]!.children[0]!.values as Uint16Array);
      if (w === 1) x[17] = f32ToF16(NaN);
      if (w === 2) x.fill(0);
      await writer.appendWindow(w, b.getChild('token')!.toArray() as Int32Array, x);
    }
    await writer.finish();
    const key0 = makeScale(runDir).layers.find((l) => l.kind === 'key' && l.layer === 0)!;
    expect(key0).toMatchObject({ tokens: 128, skippedNaN: 1, skippedZero: 1 });
    const r = runCli(['make-scale', runDir, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).layers[0]).toMatchObject({ kind: 'key', layer: 0, tokens: 128, skipped_nan: 1, skipped_zero: 1 });
  });

  it('resumes after a crash mid-window (a full disk) with files identical to an uninterrupted run', async () => {
    const straight = join(work, 'straight');
    await collectKv(base(straight));
    const crashed = join(work, 'crashed');
    let written = 0;
    const failing = async (fd: number, bytes: Uint8Array, position: number) => {
      written += bytes.byteLength;
      if (written > 60_000) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      await writeAllBytes(fd, bytes, position);
    };
    await expect(collectKv(base(crashed, { writeBytes: failing }))).rejects.toThrow(/\.arrows\.partial: disk full/);
    const state = readManifest(crashed)!.collect!;
    expect(state.complete).toBe(false);
    expect(state.windowsDone).toBeGreaterThan(0);
    expect(state.windowsDone).toBeLessThan(4);
    const resumed = await collectKv(base(crashed));
    expect(resumed).toMatchObject({ complete: true, resumedFrom: state.windowsDone });
    expect(kvBytes(crashed)).toEqual(kvBytes(straight));
  });

  it('stops cleanly when interrupted (Ctrl-C) and continues to identical files', async () => {
    const straight = join(work, 'straight');
    const stopped = join(work, 'stopped');
    const abort = new AbortController();
    const first = await collectKv(base(stopped, { signal: abort.signal, onProgress: (p) => p.windowsDone === 2 && abort.abort() }));
    // the window already computed when the signal came (writes overlap the next forward) is still committed
    expect(first.complete).toBe(false);
    expect([2, 3]).toContain(first.windowsDone);
    expect(existsSync(join(stopped, 'kv', 'key-L000.arrows.partial'))).toBe(true);
    expect(existsSync(join(stopped, 'kv', 'key-L000.arrows'))).toBe(false); // nothing half-written under the final name
    expect(await collectKv(base(stopped))).toMatchObject({ complete: true, resumedFrom: first.windowsDone });
    expect(kvBytes(stopped)).toEqual(kvBytes(straight));
    expect(await collectKv(base(stopped))).toMatchObject({ complete: true, resumedFrom: 4 }); // a finished run is left as it is
  });
});


describe('collect-kv refuses bad input with one line', () => {
  const run = (args: string[]) => runCli(['collect-kv', '--model', demo, '--device', 'cpu', '--tokens', '128', '--seq-len', '64', ...args]);
  const expectError = (args: string[], pattern: RegExp) => {
    const r = run(args);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n')[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  it('an unreadable corpus', () => {
    writeFileSync(join(work, 'broken.jsonl'), '{"text": "fine"}\nnot json\n');
    expectError(['--data', join(work, 'broken.jsonl'), '--out', join(work, 'r1')], /broken\.jsonl:2: not valid JSON/);
  });

  it('a missing text field', () => expectError(['--data', corpus, '--field', 'body', '--out', join(work, 'r2')], /essays\.jsonl:1: no field 'body'/));

  it('an empty corpus', () => {
    writeFileSync(join(work, 'empty.jsonl'), '');
    expectError(['--data', join(work, 'empty.jsonl'), '--out', join(work, 'r3')], /empty\.jsonl: fewer tokens than one window of 64/);
  });

  it('fewer tokens than one window', () => {
    writeFileSync(join(work, 'short.jsonl'), JSON.stringify({ text: 'tiny' }) + '\n');
    expectError(['--data', join(work, 'short.jsonl'), '--out', join(work, 'r4')], /short\.jsonl: fewer tokens than one window of 64/);
  });

  it('a RUN_DIR collected from a different model', () => {
    const other = join(work, 'other-model');
    cpSync(demo, other, { recursive: true });
    const config = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
    writeFileSync(join(other, 'config.json'), JSON.stringify({ ...config, rms_norm_eps: 1e-6 }));
    const runDir = join(work, 'r5');
    expect(run(['--data', corpus, '--out', runDir]).status).toBe(0);
    const r = runCli(['collect-kv', '--model', other, '--data', corpus, '--out', runDir, '--device', 'cpu', '--tokens', '128', '--seq-len', '64']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/r5: collected from a different model/);
  });

  it('make-scale on a folder that was never collected', () => {
    const r = runCli(['make-scale', join(work, 'nothing')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nothing: not a collected run/);
  });

  it('prints a summary with --json', () => {
    const r = run(['--data', corpus, '--out', join(work, 'r6'), '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ complete: true, windowsDone: 2, tokensPerLayer: 128 });
  });
});

