/**
 * `commvq generate --cache int4|int2|fp8` on the tiny-llama fixture (CPU): each runs, and its greedy tokens agree with
 * dense's (the transformers reference) for a first few tokens. The first always agrees, its logits exactly: the
 * prompt attends over its own keys exact (HF's QuantizedCache returns them unquantized). After that the fixture's
 * random weights give near-ties (top-two margins of 0.03–0.13 against logit changes of ~0.2 under fp8), so the
 * counts measured when this was written are pinned as floors: int4 3, fp8 3, int2 1 of 8 on prompt 0.
 * A wrong group is one line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixture } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-peers-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function generate(cache: string, promptFile: string, tokens: number): number[] {
  const r = runCli(['generate', '--model', fixtureDir('tiny-llama'), '--prompt-file', promptFile, '--max-new-tokens', String(tokens), '--device', 'cpu', '--cache', cache, '--json']);
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { output_ids: number[] }).output_ids;
}

describe.skipIf(!haveFixture('tiny-llama'))('generate with the peer caches on tiny-llama', () => {
  const ref = haveFixture('tiny-llama') ? new FixtureReference('tiny-llama') : undefined;
  const promptFile = join(work, 'p0.txt');
  if (ref) writeFileSync(promptFile, ref.prompts[0]!);
  const dense = ref ? ref.ids('greedy.0').slice(0, 8) : [];

  it.each([
    ['int4', 3],
    ['fp8', 3],
    ['int2', 1],
    ['int4:group=32,residual=4', 1],
  ] as const)('%s agrees with dense for its first %i tokens', (cache, floor) => {
    const ids = generate(cache, promptFile, 8);
    expect(ids).toHaveLength(8);
    let agree = 0;
    while (agree < 8 && ids[agree] === dense[agree]) agree++;
    expect(agree, `${cache}: ${ids.join(' ')} against dense ${dense.join(' ')}`).toBeGreaterThanOrEqual(floor);
  });

  it('refuses a group HF does not take, in one line', () => {
    expectOneLineError(runCli(['generate', '--model', fixtureDir('tiny-llama'), '--prompt', 'hi', '--device', 'cpu', '--cache', 'int4:group=48']), /--cache int4:group=48: group=48: groups are 32 or 64 channels/);
  });
});
