/**
 * collect-kv over the ranks of `commvq launch`: each rank collects a contiguous share of the windows, rank 0 merges
 * them, and the kv files and manifest are byte for byte one process's — through the launcher (2 CPU ranks, the tiny
 * fixture model) and in process (the demo model), with a corpus that runs out inside rank 1's share, a rank that
 * fails (no merge, one line on each rank, nothing under the final names) and the rerun that finishes the job.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { collectKv, type CollectKvOptions, type CollectKvSummary } from '../../src/core/kv/collect-kv.js';
import { collectKvOnRanks } from '../../src/core/kv/collect-kv-ranks.js';
import { writeAllBytes, type WriteBytes } from '../../src/core/kv/kv-writer.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { freePort } from '../../src/core/parallel/free-port.js';
import { Rendezvous } from '../../src/core/parallel/rendezvous.js';
import { runCli } from '../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-collect-dp-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const corpus = join(work, 'essays.jsonl');
writeFileSync(corpus, Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `Essay ${i}. ` + 'The quick brown fox jumps. '.repeat(3 + (i % 5)) })).join('\n'));

/** Every file a run wrote (kv/ and manifest.json), by digest; lock files and the like excluded. */
function runBytes(runDir: string): Record<string, string> {
  const digest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
  const kv = join(runDir, 'kv');
  return {
    'manifest.json': digest(join(runDir, 'manifest.json')),
    ...Object.fromEntries(readdirSync(kv).sort().map((f) => [`kv/${f}`, digest(join(kv, f))])),
  };
}

describe.skipIf(!haveFixtures)('collect-kv under commvq launch', () => {
  it('2 CPU ranks through the launcher write the same bytes as one process; rank 0 alone prints', async () => {
    const model = fixtureDir('tiny-llama');
    const flags = ['--model', model, '--data', corpus, '--tokens', String(5 * 64), '--seq-len', '64', '--seed', '5'];
    await collectKv({ modelDir: model, corpus, runDir: join(work, 'one'), backend: new CpuBackend(), tokens: 5 * 64, seqLen: 64, seed: 5 });
    const r = runCli(['launch', '--gpus', '0,1', '--', 'collect-kv', ...flags, '--out', join(work, 'two'), '--device', 'cpu']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([`5 windows, 320 tokens per layer, 2 layers → ${join(work, 'two')}/kv`]);
    expect(runBytes(join(work, 'two'))).toEqual(runBytes(join(work, 'one'))); // files and manifest, byte for byte
    expect(readdirSync(join(work, 'two')).sort()).toEqual(['kv', 'manifest.json']); // the ranks' shares are gone
  });

  it('a rank that fails ends the job with its line and the launcher\'s, and leaves no final output', () => {
    const runDir = join(work, 'broken');
    mkdirSync(join(runDir, 'kv-ranks', 'rank-1-of-2'), { recursive: true });
    writeFileSync(join(runDir, 'kv-ranks', 'rank-1-of-2', 'manifest.json'), '{"format": "commvq.run", "vers'); // a damaged share
    const r = runCli(['launch', '--gpus', '0,1', '--', 'collect-kv', '--model', fixtureDir('tiny-llama'), '--data', corpus, '--tokens', '320', '--seq-len', '64', '--out', runDir, '--device', 'cpu']);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('  hint: '));
    expect(lines.filter((l) => l.startsWith('commvq launch:'))).toEqual(['commvq launch: rank 1 (GPU 1) exited with code 1; the other rank was stopped']);
    expect(lines.filter((l) => l.startsWith('commvq:'))).toHaveLength(1);
    expect(lines.find((l) => l.startsWith('commvq:'))).toMatch(/rank-1-of-2\/manifest\.json/);
    expect(existsSync(join(runDir, 'manifest.json'))).toBe(false);
    expect(existsSync(join(runDir, 'kv')) ? readdirSync(join(runDir, 'kv')) : []).toEqual([]);
  });
});

describe('collect-kv over ranks, in process', () => {
  const demo = join(work, 'demo');
  writeDemoModel(demo);
  // 12 essays pack into 25 windows of 64; a budget of 40 gives rank 0 windows 0-19 and rank 1 20-39, of which the
  // corpus fills 20-24
  const options = (runDir: string, o: Partial<CollectKvOptions> = {}): CollectKvOptions => ({
    modelDir: demo, corpus, runDir, backend: new CpuBackend(), tokens: 40 * 64, seqLen: 64, seed: 5, ...o,
  });
  const ranks = async (runDir: string, perRank: (rank: number) => Partial<CollectKvOptions> = () => ({})): Promise<PromiseSettledResult<CollectKvSummary>[]> => {
    const masterPort = await freePort();
    const rdzvs = await Promise.all([0, 1].map((rank) => Rendezvous.join({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort, timeoutMs: 10_000 })));
    // a rank that fails closes its connection, as its process's exit does under the launcher
    return Promise.allSettled(rdzvs.map((rdzv, rank) => collectKvOnRanks(options(runDir, perRank(rank)), rdzv).finally(() => rdzv.close())));
  };

  it('a failed rank means no merge and one line on each rank; the rerun finishes to one process\'s bytes', async () => {
    const one = await collectKv(options(join(work, 'demo-one')));
    expect(one).toMatchObject({ complete: true, windowsDone: 25, shortOfBudget: true });

    const runDir = join(work, 'demo-two');
    let written = 0;
    const failing: WriteBytes = async (fd, bytes, position) => {
      written += bytes.byteLength;
      if (written > 60_000) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      await writeAllBytes(fd, bytes, position);
    };
    const [zero, other] = await ranks(runDir, (rank) => (rank === 1 ? { writeBytes: failing } : {}));
    expect(other).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/^[^\n]*rank-1-of-2\/kv\/[a-z]+-L\d+\.arrows\.partial: disk full$/) } });
    expect(zero).toMatchObject({ status: 'rejected', reason: { message: `${runDir}: not merged: rendezvous: rank 1 left (its connection closed)` } });
    expect(existsSync(join(runDir, 'manifest.json'))).toBe(false);
    expect(existsSync(join(runDir, 'kv'))).toBe(false);
    // one process cannot take over the shares
    await expect(collectKv(options(runDir))).rejects.toThrow(/holds the unmerged windows of a commvq launch collect-kv of 2 ranks/);

    const [done, done1] = await ranks(runDir);
    expect(done).toMatchObject({ status: 'fulfilled', value: { complete: true, windows: 40, windowsDone: 25, tokensPerLayer: 25 * 64, shortOfBudget: true } });
    expect(done1).toMatchObject({ status: 'fulfilled', value: { complete: true, windowsDone: 25 } });
    expect((done as PromiseFulfilledResult<CollectKvSummary>).value.resumedFrom).toBeGreaterThan(0); // rank 1 kept its committed windows
    expect(runBytes(runDir)).toEqual(runBytes(join(work, 'demo-one')));
    expect(readdirSync(runDir).sort()).toEqual(['kv', 'manifest.json']);
    // a finished run is left as it is, by a job or one process
    expect((await ranks(runDir)).map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(await collectKv(options(runDir))).toMatchObject({ complete: true, resumedFrom: 25 });
    expect(runBytes(runDir)).toEqual(runBytes(join(work, 'demo-one')));
  });

  it('a corpus shorter than one window: rank 0 fails with one process\'s line, and nothing is kept', async () => {
    const short = join(work, 'short.jsonl');
    writeFileSync(short, JSON.stringify({ text: 'Too short.' }) + '\n');
    const runDir = join(work, 'demo-short');
    const [zero, other] = await ranks(runDir, () => ({ corpus: short }));
    expect(zero).toMatchObject({ status: 'rejected', reason: { message: `${short}: fewer tokens than one window of 64` } });
    expect(other).toMatchObject({ status: 'fulfilled', value: { windowsDone: 0 } });
    expect(existsSync(join(runDir, 'kv-ranks'))).toBe(false); // a rerun with a longer corpus starts afresh
  });
});
