/**
 * train-key over the ranks of a job (CPU ranks, TCP collective, in process): each rank trains its share of the
 * layers, rank 0 gathers them, and the codebook and report equal one process's (layers are seeded by their own
 * numbers, whichever rank trains them); a stopped job's finished layers, kept per rank, are taken up on resume.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { trainKey, type TrainKeyOptions, type TrainKeyResult } from '../../src/core/keys/train-key.js';
import { collectKv } from '../../src/core/kv/collect-kv.js';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { freePort } from '../../src/core/parallel/free-port.js';
import { openCollective } from '../../src/core/parallel/open-collective.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-trainkey-dp-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('train-key, layers over ranks', () => {
  const base = join(work, 'run');
  let n = 0;
  const copy = () => {
    const d = join(work, `copy${n++}`);
    cpSync(base, d, { recursive: true });
    return d;
  };
  beforeAll(async () => {
    const demo = join(work, 'demo');
    writeDemoModel(demo);
    const corpus = join(work, 'corpus.jsonl');
    const words = ['keys', 'rotate', 'codebook', 'attention', 'residual', 'quantize', 'commute', 'vector', 'the', 'a'];
    writeFileSync(corpus, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: Array.from({ length: 300 }, (_, k) => words[(i * 3 + k * k) % words.length]).join(' ') })).join('\n'));
    await collectKv({ modelDir: demo, corpus, runDir: base, backend: new CpuBackend(), tokens: 4608, seqLen: 512, seed: 1 });
  }, 120_000);
  const options = (runDir: string, o: Partial<TrainKeyOptions> = {}): TrainKeyOptions => ({
    runDir, method: 'em', bits: 1, residuals: 1, layers: '0,1', tokens: 4096, heldout: 512, em: { maxSteps: 1 }, backend: new CpuBackend(), ...o,
  });
  const ranks = async (worldSize: number, runDir: string, perRank: (rank: number) => Partial<TrainKeyOptions> = () => ({})): Promise<TrainKeyResult[]> => {
    const masterPort = await freePort();
    const cs = await Promise.all(Array.from({ length: worldSize }, (_, rank) => openCollective({ rank, worldSize, localRank: rank, localWorldSize: worldSize, masterAddr: '127.0.0.1', masterPort, timeoutMs: 10_000 }, new CpuBackend())));
    try {
      return await Promise.all(cs.map((collective, rank) => trainKey(options(runDir, { collective, ...perRank(rank) }))));
    } finally {
      cs.forEach((c) => c.dispose());
    }
  };
  const timeless = (r: TrainKeyResult) => r.report.layers.map(({ seconds: _, ...rest }) => rest);

  it('keeps what each rank of a stopped job finished, resumes, and rank 0 gathers one process\'s codebook and report', async () => {
    const one = await trainKey(options(copy()));
    const dir = copy();
    const abort = new AbortController();
    abort.abort(); // rank 0 stops before its layer 0; rank 1 finishes layer 1 into its own partial files
    const stopped = await ranks(2, dir, (rank) => (rank === 0 ? { signal: abort.signal } : {}));
    expect(stopped.map((r) => r.complete)).toEqual([false, false]);
    expect(existsSync(stopped[0]!.codebook)).toBe(false);
    expect([...readKeyCodebook(`${stopped[0]!.codebook}.partial.rank-1`).layers.keys()]).toEqual([1]);
    const [zero, other] = await ranks(2, dir, () => ({ resume: true })); // rank 0 trains layer 0, rank 1 has nothing left
    expect(zero!.complete && other!.complete).toBe(true);
    expect(timeless(zero!)).toEqual(timeless(one));
    const got = readKeyCodebook(zero!.codebook);
    const want = readKeyCodebook(one.codebook);
    for (const layer of [0, 1]) expect(got.layers.get(layer)!.theta).toEqual(want.layers.get(layer)!.theta);
    expect(readdirSync(dir).filter((f) => f.includes('.partial'))).toEqual([]); // rank 0 removed every rank's partial files
  });
});
