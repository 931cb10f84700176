/**
 * A truncated kv file, as a user meets it (issue 17, item 6): make-scale, train-key and collect-kv's resume each
 * refuse it with one line naming the file, exit 1; before, make-scale and train-key printed apache-arrow's "Expected
 * to read 137216 bytes for message body" as an internal error, and collect-kv extended a cut partial file with zeros.
 * train-key, failing on its second layer, leaves no codebook under its final name (only the resumable .partial).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { readManifest } from '../../src/core/kv/run-manifest.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

describe.skipIf(!haveFixtures)('a truncated kv file is named and refused (tiny-llama, CPU)', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-truncated-'));
  const runDir = join(work, 'run');
  const corpus = join(work, 'corpus.jsonl');
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const collect = { tokens: 4608, seqLen: 512 }; // enough keys for the EM's 4096 centres plus held-out ones
  const collectArgs = (out: string) => ['collect-kv', '--model', model, '--data', corpus, '--out', out, '--tokens', '4608', '--seq-len', '512', '--device', 'cpu'];
  const cut = join(runDir, 'kv', 'key-L001.arrows');
  beforeAll(async () => {
    const words = new FixtureReference('tiny-llama').prompts[1]!.split(' ');
    writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: words.slice((i * 37) % 200, ((i * 37) % 200) + 120).join(' ') })).join('\n'));
    await collectKv({ modelDir: model, corpus, runDir, backend: new CpuBackend(), ...collect });
    truncateSync(cut, Math.floor(statSync(cut).size / 2)); // layer 1's keys: train-key finishes layer 0 first
  }, 120_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const named = /kv\/key-L001\.arrows: truncated or damaged: \d+ bytes where the run manifest records \d+$/;

  it('make-scale names the file', () => {
    expectOneLineError(runCli(['make-scale', runDir]), named, { silentStdout: true });
    expect(existsSync(join(runDir, 'scale.arrow'))).toBe(false);
  });

  it('train-key names the file and leaves no codebook under its final name', () => {
    const r = runCli(['train-key', runDir, '--residuals', '1', '--em-steps', '2', '--heldout', '512', '--device', 'cpu']);
    expectOneLineError(r, named);
    expect(existsSync(join(runDir, 'key-codebook-em-1bit.arrow'))).toBe(false);
    expect(existsSync(join(runDir, 'key-codebook-em-1bit.report.json'))).toBe(false);
    expect(existsSync(join(runDir, 'key-codebook-em-1bit.arrow.partial'))).toBe(true); // layer 0, for --resume
  });

  it('collect-kv refuses to go on from a finished run with a cut file', () => {
    expectOneLineError(runCli(collectArgs(runDir)), named, { silentStdout: true });
  });

  it('collect-kv refuses to resume over a partial file shorter than its manifest records', async () => {
    const stopped = join(work, 'stopped');
    const abort = new AbortController();
    await collectKv({ modelDir: model, corpus, runDir: stopped, backend: new CpuBackend(), ...collect, signal: abort.signal, onProgress: (p) => p.windowsDone >= 3 && abort.abort() });
    const state = readManifest(stopped)!.collect!;
    expect(state.complete).toBe(false);
    const partial = join(stopped, 'kv', 'value-L000.arrows.partial');
    const before = readFileSync(partial);
    truncateSync(partial, state.files['value-L000.arrows']! - 100);
    expectOneLineError(runCli(collectArgs(stopped)), /kv\/value-L000\.arrows\.partial: truncated: \d+ bytes where the run manifest records \d+ committed$/, { silentStdout: true });

    // whole again but for the head of its last committed window (windows are equal in size after the schema
    // message of 8 + metadata-length bytes): the window check reads it and names the file
    const committed = state.files['value-L000.arrows']!;
    const window = (committed - (8 + before.readInt32LE(4))) / state.windowsDone;
    before.fill(0, committed - window, committed - window + 16);
    writeFileSync(partial, before);
    const r = runCli(collectArgs(stopped));
    expectOneLineError(r, /kv\/value-L000\.arrows\.partial: truncated or damaged Arrow file/, { silentStdout: true });
  }, 120_000);
});
