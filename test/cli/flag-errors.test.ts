/**
 * Issue 17, items 3, 4 and 8: oclif's parse errors, numeric flags (--cache's numbers included) and paths of the wrong kind each give one line
 * naming the flag, exit 1, and write nothing — as users run the commands (bin/run.js → dist/).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/fixtures.js';
import { demoModel, tempRoot } from '../eval/run/helpers.js';

const root = tempRoot('flag-errors');
const demo = demoModel(root);
const cpu = ['--device', 'cpu'];
const aFile = join(root, 'a-file');
writeFileSync(aFile, 'keep me');

describe('oclif parse errors: whole, one line, exit 1', () => {
  it('a value outside a flag’s range', () =>
    expectOneLineError(runCli(['collect-kv', '--model', demo, '--data', 'x', '--out', join(root, 'never'), '--seq-len', '0', ...cpu]), /^commvq: --seq-len 0: must be at least 1$/, { silentStdout: true }));

  it('a missing required flag', () =>
    expectOneLineError(runCli(['collect-kv', '--model', demo, '--data', 'x']), /^commvq: Missing required flag out$/, { silentStdout: true }));

  it('a missing argument', () =>
    expectOneLineError(runCli(['make-scale']), /^commvq: Missing 1 required arg: runDir run folder written by collect-kv$/, { silentStdout: true }));

  it('a value outside a flag’s options', () =>
    expectOneLineError(runCli(['generate', '--demo', '--prompt', 'x', '--dtype', 'f64']), /^commvq: Expected --dtype=f64 to be one of: auto, f32, bf16, f16$/, { silentStdout: true }));

  it('--json carries the same line', () => {
    const r = runCli(['make-scale', '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ error: { message: 'Missing 1 required arg: runDir run folder written by collect-kv' } });
  });
});

describe('numeric flags: one helper, the flag named', () => {
  const run = join(root, 'tv-run');
  for (const [lr, problem] of [['NaN', 'not a number'], ['abc', 'not a number'], ['1e30', 'must be at most 1'], ['-1', 'must be above 0'], ['Infinity', 'not a number']]) {
    it(`train-value --lr ${lr}`, () => {
      const r = runCli(['train-value', run, '--model', demo, '--data', 'x', '--bits', '1', '--lr', lr!, ...cpu]);
      expectOneLineError(r, new RegExp(`^commvq: --lr ${lr}: ${problem}$`), { silentStdout: true });
      expect(existsSync(run)).toBe(false);
    });
  }

  it('a whole number where one is needed, and the shared --seed', () => {
    expectOneLineError(runCli(['train-value', run, '--model', demo, '--data', 'x', '--bits', '1', '--steps', '1.5', ...cpu]), /^commvq: --steps 1\.5: not a whole number$/);
    expectOneLineError(runCli(['pipeline', '--out', join(root, 'never'), '--seed', '-3', ...cpu]), /^commvq: --seed -3: must be at least 0$/);
    expectOneLineError(runCli(['eval', 'niah', '--model', demo, '--out', join(root, 'never'), '--limit', '1e400', ...cpu]), /^commvq: --limit 1e400: not a finite number$/);
    expect(existsSync(join(root, 'never'))).toBe(false);
  });

  it('measure-memory --device-memory, and the numbers inside --cache: the same helper, the same words', () => {
    const memory = (...args: string[]) => runCli(['measure-memory', '--random-weights', join(REPO_ROOT, 'scripts/bench/llama-3.1-8b.config.json'), '--out', join(root, 'never'), ...cpu, ...args]);
    expectOneLineError(memory('--device-memory', 'abc'), /^commvq: --device-memory abc: not a number$/, { silentStdout: true });
    expectOneLineError(memory('--device-memory', '0'), /^commvq: --device-memory 0: must be above 0$/);
    expectOneLineError(memory('--device-memory', '1e400'), /^commvq: --device-memory 1e400: not a finite number$/);
    expectOneLineError(memory('--cache', 'dense:chunk=0'), /^commvq: --cache dense:chunk=0: chunk=0: must be at least 1$/);
    const generate = (cache: string) => runCli(['generate', '--demo', '--prompt', 'x', '--cache', cache, ...cpu]);
    expectOneLineError(generate('dense:chunk=abc'), /^commvq: --cache dense:chunk=abc: chunk=abc: not a whole number$/, { silentStdout: true });
    expectOneLineError(generate('commvq:bits=1,run=r,seed=-1'), /^commvq: --cache commvq:bits=1,run=r,seed=-1: seed=-1: must be at least 0$/);
    expect(existsSync(join(root, 'never'))).toBe(false);
  });
});

describe('paths of the wrong kind, refused before any work', () => {
  const untouched = () => expect(readFileSync(aFile, 'utf8')).toBe('keep me');

  it('collect-kv, eval and measure-memory: an --out that is a file', () => {
    expectOneLineError(runCli(['collect-kv', '--model', demo, '--data', 'x', '--out', aFile, ...cpu]), /^commvq: --out \S*a-file: is a file, not a folder$/, { silentStdout: true });
    expectOneLineError(runCli(['eval', 'niah', '--model', demo, '--out', aFile, ...cpu]), /^commvq: --out \S*a-file: is a file, not a folder$/, { silentStdout: true });
    expectOneLineError(
      runCli(['measure-memory', '--random-weights', demo, '--context', '64', '--out', aFile, ...cpu]),
      /^commvq: --out \S*a-file: is a file, not a folder$/,
      { silentStdout: true },
    );
    expectOneLineError(runCli(['collect-kv', '--model', demo, '--data', 'x', '--out', join(aFile, 'sub'), ...cpu]), /^commvq: --out \S*a-file\/sub: \S*a-file is a file, not a folder$/);
    untouched();
  });

  it('generate: a --prompt-file that is a folder', () => {
    const dir = join(root, 'prompt-dir');
    mkdirSync(dir, { recursive: true });
    expectOneLineError(runCli(['generate', '--demo', '--prompt-file', dir, ...cpu]), /^commvq: --prompt-file \S*prompt-dir: is a folder, not a file$/, { silentStdout: true });
    expect(readdirSync(dir)).toEqual([]);
  });
});
