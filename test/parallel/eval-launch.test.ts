/**
 * `commvq eval` through `commvq launch`: 2 CPU ranks each run their shard into one folder, rank 0 merges them, and
 * the merged predictions are the one-process run's.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { runNiah } from '../../src/core/eval/run/niah-run.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../helpers/fixtures.js';

describe.skipIf(!haveFixtures)('eval under commvq launch', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-eval-launch-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('shards eval niah over 2 ranks and merges to the predictions of one process', async () => {
    const one = await runNiah({ modelDir: fixtureDir('tiny-llama'), out: join(work, 'one'), backend: new CpuBackend(), lengths: [260], depths: [0, 50, 100] });
    expect(one.outcome).toBe('complete');
    const two = runCli(['launch', '--gpus', '0,1', '--', 'eval', 'niah', '--model', fixtureDir('tiny-llama'), '--lengths', '260', '--depths', '0,50,100', '--out', join(work, 'two'), '--device', 'cpu']);
    expect(two.status, two.stderr).toBe(0);
    expect(two.stdout).toMatch(/^merged 2 shards: NIAH .* over 3 cells → .*summary\.json$/m);
    const predictions = (dir: string) => readFileSync(join(work, dir, 'predictions', 'niah.jsonl'), 'utf8').trim().split('\n').map((l) => {
      const { id, pred } = JSON.parse(l) as { id: string; pred: string };
      return `${id}\t${pred}`;
    }).sort();
    expect(predictions('two')).toEqual(predictions('one'));
    expect(predictions('one')).toHaveLength(3);
  });

  it('refuses --shard under launch with one line, before waiting for the other ranks', () => {
    const r = runCli(['eval', 'niah', '--model', fixtureDir('tiny-llama'), '--lengths', '260', '--out', join(work, 'x'), '--shard', '1/2', '--device', 'cpu'],
      { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1' });
    expectOneLineError(r, /^commvq: --shard 1\/2: commvq launch gives each rank its shard \(rank\/world\)$/);
  });
});
