/** `commvq generate` as a user runs it: exact reference ids in --json mode, the demo model, and --help. */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { FIXTURE_MODELS, FixtureReference, fixtureDir, haveFixtures } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!haveFixtures).each(FIXTURE_MODELS)('generate --json on %s', (name) => {
  for (const p of [0, 1]) {
    it(`prints exactly the reference ids for prompt ${p}`, () => {
      const ref = new FixtureReference(name);
      const want = ref.ids(`greedy.${p}`);
      const promptFile = join(work, `${name}-${p}.txt`);
      writeFileSync(promptFile, ref.prompts[p]!);
      const r = runCli(['generate', '--model', fixtureDir(name), '--prompt-file', promptFile, '--max-new-tokens', String(want.length), '--device', 'cpu', '--json']);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[]; text: string };
      expect(Object.keys(out).sort()).toEqual(['output_ids', 'prompt_ids', 'text']);
      expect(out.prompt_ids).toEqual(ref.ids(`ids.${p}`));
      expect(out.output_ids).toEqual(want);
      expect(typeof out.text).toBe('string');
    });
  }
});

describe('generate --demo', () => {
  it('runs the built-in model deterministically', () => {
    const args = ['generate', '--demo', '--prompt', 'The pass key is', '--max-new-tokens', '8', '--device', 'cpu', '--json'];
    const a = runCli(args);
    const b = runCli(args);
    expect(a.status, a.stderr).toBe(0);
    const out = JSON.parse(a.stdout) as { prompt_ids: number[]; output_ids: number[] };
    expect(out.prompt_ids).toEqual([...Buffer.from('The pass key is')]); // byte-level tokenizer: one id per byte
    expect(out.output_ids).toHaveLength(8);
    expect(b.stdout).toBe(a.stdout);
  });

  it('prints the text, and timing on stderr, without --json', () => {
    const r = runCli(['generate', '--demo', '--prompt', 'hi', '--max-new-tokens', '4', '--device', 'cpu']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/2 prompt tokens, 4 generated \(max-new-tokens\) on cpu/);
  });

  it('has --help with examples', () => {
    const r = runCli(['generate', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('EXAMPLES');
    expect(r.stdout).toContain('--max-new-tokens');
  });
});

/** The demo model's folder without its checkpoint: config.json and the tokenizer only. */
function configOnlyDemo(): string {
  const dir = join(work, 'config-only');
  if (!existsSync(dir)) {
    writeDemoModel(dir);
    rmSync(join(dir, 'model.safetensors'));
  }
  return dir;
}

describe('generate --random-weights', () => {
  it('needs only config.json and the tokenizer, and generates deterministically', () => {
    const dir = configOnlyDemo();
    const args = ['generate', '--model', dir, '--random-weights', '--prompt', 'abc', '--max-new-tokens', '6', '--ignore-eos', '--device', 'cpu', '--json'];
    const a = runCli(args);
    expect(a.status, a.stderr).toBe(0);
    expect((JSON.parse(a.stdout) as { output_ids: number[] }).output_ids).toHaveLength(6);
    expect(runCli(args).stdout).toBe(a.stdout);
  });

  it('takes commvq:bits=1 alone as random codebooks; without --random-weights that cache is refused', () => {
    const args = ['generate', '--model', configOnlyDemo(), '--prompt', 'abc', '--max-new-tokens', '4', '--ignore-eos', '--cache', 'commvq:bits=1', '--device', 'cpu'];
    const r = runCli([...args, '--random-weights']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/3 prompt tokens, 4 generated \(max-new-tokens\) on cpu: .* commvq cache \(faithful prefill, random codebooks\)/);
    expectOneLineError(runCli(args), /^commvq: --cache commvq:bits=1: commvq needs codebooks: key= and value=, or run= and bits=$/, { silentStdout: true });
  });
});
