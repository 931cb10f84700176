/**
 * `commvq generate --cache kivi:…` on the tiny-llama fixture (CPU): a prompt shorter than R is held all exact, so its
 * greedy ids are the reference's; a long prompt's first token comes from the exact prompt attention (KIVI's prefill),
 * so it agrees too, and later ones may drift. Measured with 32 new tokens on prompt 1 (709 tokens): KIVI-2 agrees
 * with dense on the first 2, KIVI-1 on the first 1. Grammar errors are one line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixture } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-kivi-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** generate's ids for prompt `p` of tiny-llama with `cache`. */
function generate(p: number, cache: string, tokens: number): { prompt_ids: number[]; output_ids: number[] } {
  const ref = new FixtureReference('tiny-llama');
  const promptFile = join(work, `p${p}.txt`);
  writeFileSync(promptFile, ref.prompts[p]!);
  const r = runCli(['generate', '--model', fixtureDir('tiny-llama'), '--prompt-file', promptFile, '--max-new-tokens', String(tokens), '--device', 'cpu', '--cache', cache, '--json']);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[] };
}

describe.skipIf(!haveFixture('tiny-llama'))('generate --cache kivi on tiny-llama', () => {
  let denseIds: number[] | undefined; // prompt 1's dense ids, generated once
  it('under R = 128 tokens everything is exact: the reference ids', () => {
    const want = new FixtureReference('tiny-llama').ids('greedy.0');
    const out = generate(0, 'kivi:bits=2', want.length);
    expect(out.prompt_ids.length + want.length).toBeLessThan(128);
    expect(out.output_ids).toEqual(want);
  });

  it.each(['kivi:bits=2', 'kivi:bits=1'])('%s on a 709-token prompt: runs, and its first token is dense’s (exact prefill)', (cache) => {
    denseIds ??= generate(1, 'dense', 4).output_ids;
    const dense = denseIds;
    const kivi = generate(1, cache, 4).output_ids;
    expect(kivi).toHaveLength(4);
    expect(kivi[0]).toBe(dense[0]);
  });
});

describe('generate --cache kivi refuses bad options in one line', () => {
  it.each([
    ['kivi:bits=3', /--cache kivi:bits=3: bits=3: KIVI's bit widths are 2 and 1/],
    ['kivi:residual=20,group=32', /--cache kivi:residual=20,group=32: residual=20 is not a multiple of group=32/],
  ])('%s', (cache, pattern) => {
    expectOneLineError(runCli(['generate', '--demo', '--prompt', 'hi', '--device', 'cpu', '--cache', cache]), pattern);
  });
});
