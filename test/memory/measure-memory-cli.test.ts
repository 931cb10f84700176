/**
 * `commvq measure-memory` on the CPU, run as a user would (bin/run.js → dist/, so `npm run build` first): the byte
 * accounting as a table and as JSON, --out's files, a batch that cannot fit as an answer, both CommVQ prefill modes
 * labelled apart, and bad input as one line.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const LLAMA = join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json');
const work = mkdtempSync(join(tmpdir(), 'commvq-mem-cli-'));
const demo = join(work, 'demo');
writeDemoModel(demo);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const measure = (args: string[]) => runCli(['measure-memory', '--device', 'cpu', ...args]);

function expectMeasureError(args: string[], pattern: RegExp): void {
  expectOneLineError(measure(args), pattern, { silentStdout: true });
}

describe('commvq measure-memory on the CPU', () => {
  it('prints the accounting table, with a batch that cannot fit reported as the answer', () => {
    const r = measure(['--random-weights', LLAMA, '--cache', 'dense,commvq', '--context', '128k', '--batch', '1,8']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^measure-memory on cpu: llama-3.1-8b/);
    expect(r.stdout).toMatch(/^dense\s+128K\s+8\s+no\s+/m);
    expect(r.stdout).toMatch(/^commvq-1bit\s+128K\s+8\s+yes\s+/m);
    expect(r.stdout).toMatch(/dense 128K × 8: resident bytes 142\.\d\d GiB exceed the assumed 80\.00 GiB/);
  });

  it('checks points against the card --device-memory names', () => {
    const r = measure(['--random-weights', LLAMA, '--cache', 'dense', '--context', '32k', '--device-memory', '17.5']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^dense\s+32K\s+1\s+no\s+/m);
    expect(r.stdout).toMatch(/exceed the assumed 17\.50 GiB/);
  });

  it('says in --help what --device-memory is compared with, and what happens above it', () => {
    const r = runCli(['measure-memory', '--help']);
    expect(r.status, r.stderr).toBe(0);
    const help = r.stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/compared with the driver’s total memory \(an H100 80GB’s is 79\.18\): up to 2% above it names the card itself and is measured at the driver’s total; more is refused/);
    expect(help).toMatch(/throughput\.svg\/\.png/);
  });

  it('refuses a --device-memory that is not a size', () =>
    expectMeasureError(['--random-weights', LLAMA, '--device-memory', '80GB'], /--device-memory 80GB: not a number$/)); // a number of GiB, by the one number rule (flag-errors.test.ts)

  it('prints the JSON document with --json, and --out writes the report and both plots', () => {
    const out = join(work, 'out');
    const r = measure(['--random-weights', LLAMA, '--cache', 'commvq:bits=1,commvq:bits=2', '--context', '8k,32k', '--max-batch', '--max-batch-limit', '64', '--json', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ format: 'commvq.memory-report', version: 3, device: 'cpu', measures: false });
    expect(doc.command).toMatch(/^commvq measure-memory --device cpu --random-weights \S+ --cache commvq:bits=1,commvq:bits=2/);
    expect(doc.points).toHaveLength(4);
    expect(doc.max_batch.map((e: { cache: string; max_batch: number; capped: boolean }) => [e.cache, e.max_batch, e.capped])).toEqual([
      ['commvq-1bit', 64, true], ['commvq-1bit', 64, true], ['commvq-2bit', 64, true], ['commvq-2bit', 64, true],
    ]);
    // the CPU times no decode: no tokens/s and no throughput plot
    expect(doc.points.every((p: { tokens_per_s: number | null }) => p.tokens_per_s === null)).toBe(true);
    expect(doc.summary.throughput).toEqual([]);
    expect(readdirSync(out).sort()).toEqual(['bytes-per-token.png', 'bytes-per-token.svg', 'memory.json', 'memory.png', 'memory.svg']);
  });

  it('takes prefill= in both modes, one width in both as two caches, labelled apart in the table and the JSON', () => {
    const cache = 'dense,commvq:bits=1,prefill=faithful,commvq:bits=1,prefill=strict';
    const table = measure(['--random-weights', LLAMA, '--cache', cache, '--context', '8k']);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^commvq-1bit\s+8K\s+1\s+yes\s+/m);
    expect(table.stdout).toMatch(/^commvq-1bit-strict\s+8K\s+1\s+yes\s+/m);
    const doc = JSON.parse(measure(['--random-weights', LLAMA, '--cache', cache, '--context', '8k', '--json']).stdout);
    expect(doc.points.map((p: { cache: string; prefill: string | null }) => [p.cache, p.prefill])).toEqual([['dense', null], ['commvq-1bit', 'faithful'], ['commvq-1bit-strict', 'strict']]);
    // the accounting does not depend on the mode: the same resident bytes
    expect(doc.points[1].resident).toBe(doc.points[2].resident);
    // the default is faithful, named or not
    const plain = JSON.parse(measure(['--random-weights', LLAMA, '--cache', 'commvq:bits=1', '--context', '8k', '--json']).stdout);
    expect(plain.points.map((p: { cache: string; prefill: string }) => [p.cache, p.prefill])).toEqual([['commvq-1bit', 'faithful']]);
  });

  it('refuses encoding=, seed= and chunk= in one line, and the same cache twice', () => {
    const notTaken = /^commvq: --cache commvq:bits=1,\S+: measure-memory runs every prompt as generate does \(layer by layer, in the model’s row chunks\), with argmax value codes: encoding=, seed= and chunk= are not taken \(prefill= is\)$/;
    expectMeasureError(['--random-weights', LLAMA, '--cache', 'commvq:bits=1,prefill=strict,encoding=gumbel'], notTaken);
    expectMeasureError(['--random-weights', LLAMA, '--cache', 'commvq:bits=1,prefill=strict,chunk=4096'], notTaken);
    expectMeasureError(['--random-weights', LLAMA, '--cache', 'commvq:bits=1,commvq:bits=1,prefill=faithful'], /--cache.*: commvq-1bit is given twice$/);
    expectMeasureError(['--random-weights', LLAMA, '--cache', 'commvq:bits=1,prefill=strict,commvq:bits=1,prefill=strict'], /--cache.*: commvq-1bit-strict is given twice$/);
  });

  it('refuses a context beyond the model’s limit', () =>
    expectMeasureError(['--random-weights', LLAMA, '--context', '8k,256k'], /--context 256K: 262144 tokens is beyond the model's limit of 131072 \(max_position_embeddings in .*llama-3\.1-8b\.config\.json\)/));

  it('refuses --cache commvq on a real model without codebooks', () =>
    expectMeasureError(['--model', demo, '--cache', 'commvq', '--context', '64'], /--cache commvq: commvq needs codebooks: key= and value=, or run= and bits=/));

  it('keeps --bits for older command lines: a commvq without bits= is one cache per width', () => {
    const older = JSON.parse(measure(['--random-weights', LLAMA, '--cache', 'dense,commvq', '--bits', '1,2', '--context', '8k', '--json']).stdout);
    const now = JSON.parse(measure(['--random-weights', LLAMA, '--cache', 'dense,commvq:bits=1,commvq:bits=2', '--context', '8k', '--json']).stdout);
    expect(older.points.map((p: { cache: string }) => p.cache)).toEqual(['dense', 'commvq-1bit', 'commvq-2bit']);
    expect(older.points).toEqual(now.points);
  });

  it('refuses an unknown --cache', () => expectMeasureError(['--random-weights', LLAMA, '--cache', 'h2o'], /--cache h2o: unknown cache kind 'h2o'/));
});
