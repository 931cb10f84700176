/**
 * `commvq launch` with child-process ranks on localhost (the built CLI, dist/): each rank gets its own environment
 * and rank 0's blob through the rendezvous; a rank that dies ends the job with one line and its exit code; Ctrl-C
 * reaches every rank; bad input is one line.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const rank = join(REPO_ROOT, 'test', 'parallel', 'fixtures', 'rank.mjs');
const node = process.execPath;

describe('commvq launch', () => {
  it('starts one rank per GPU with torchrun\'s variables, and the rendezvous delivers rank 0\'s blob to all', () => {
    const r = runCli(['launch', '--gpus', '2,5,7', '--', node, rank, 'x', '--warmup', '1', '--', '-y']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { env: Record<string, string>; blob: string; argv: string[] });
    const byRank = lines.sort((a, b) => Number(a.env.RANK) - Number(b.env.RANK));
    expect(byRank.map((l) => [l.env.RANK, l.env.LOCAL_RANK, l.env.CUDA_VISIBLE_DEVICES])).toEqual([['0', '0', '2'], ['1', '1', '5'], ['2', '2', '7']]);
    const port = byRank[0]!.env.MASTER_PORT;
    for (const l of byRank) {
      expect(l.env).toMatchObject({ WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, NCCL_NVLS_ENABLE: '0' });
      expect(l.argv).toEqual(['x', '--warmup', '1', '--', '-y']); // as typed, in order (oclif's own argv reorders them)
      expect(l.blob).toBe(Buffer.from(Array.from({ length: 128 }, (_, i) => i)).toString('hex'));
    }
  });

  it('ends the job when a rank dies: the others are stopped, one line names the rank, the exit code is its', () => {
    const t0 = performance.now();
    const r = runCli(['launch', '--gpus', '0-3', '--', node, rank], { RANK_DIES: '2' });
    expect(r.status).toBe(3);
    expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('commvq launch:'))).toEqual(['commvq launch: rank 2 (GPU 2) exited with code 3; the other 3 ranks were stopped']);
    expect(performance.now() - t0).toBeLessThan(8000); // not the rendezvous's 60 s deadline
  });

  it('forwards Ctrl-C to every rank and exits with their code', async () => {
    const child = spawn(node, [join(REPO_ROOT, 'bin', 'run.js'), 'launch', '--gpus', '0,1', '--', node, rank], { env: { ...process.env, RANK_WAITS: '1' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('"waiting":true').length === 3) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(130);
  });

  it('refuses bad input with one line (a bad --gpus list is unit-tested in rendezvous.test.ts)', () => {
    expectOneLineError(runCli(['launch', '--gpus', '0']), /no command after --/);
    expectOneLineError(runCli(['launch', '--gpus', '0', '--nnodes', '2', '--', node, rank]), /--nnodes > 1 needs --master-addr/);
  });
});
