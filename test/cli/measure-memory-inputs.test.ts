/**
 * measure-memory checks its model and codebooks as generate does (issue 17, item 7): before, on the CPU it read only
 * config.json, so a corrupt safetensors file gave a report and exit 0, and a key codebook made for another head size
 * was accounted with the wrong geometry, where generate refused the same file. Now both commands refuse them with
 * the same line (checkModelFolder, loadSpecCodebooks), exit 1, and measure-memory writes nothing into --out.
 */
import { cpSync, existsSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/core/model/config.js';
import { readJson } from '../../src/core/tokenizer/text-tokenizer.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';
import { expectOneLineError, runCli, type CliResult } from '../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../helpers/fixtures.js';

describe.skipIf(!haveFixtures)('measure-memory refuses what generate refuses (tiny-llama, CPU)', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-mem-inputs-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const model = haveFixtures ? fixtureDir('tiny-llama') : '';
  const out = join(work, 'mem');

  const measure = (modelDir: string, cache: string): CliResult =>
    runCli(['measure-memory', '--model', modelDir, '--cache', cache, '--context', '1k', '--device', 'cpu', '--out', out]);
  const generate = (modelDir: string, cache: string): CliResult =>
    runCli(['generate', '--model', modelDir, '--prompt', 'hello', '--max-new-tokens', '2', '--device', 'cpu', '--cache', cache]);

  /** Both commands fail with the same one line matching `pattern`; measure-memory leaves no --out folder. */
  const expectBothRefuse = (modelDir: string, cache: string, pattern: RegExp) => {
    const m = measure(modelDir, cache);
    expectOneLineError(m, pattern, { silentStdout: true });
    expect(existsSync(out)).toBe(false);
    const g = generate(modelDir, cache);
    expectOneLineError(g, pattern, { silentStdout: true });
    expect(m.stderr).toBe(g.stderr);
  };

  it('a truncated safetensors file', () => {
    const dir = join(work, 'truncated');
    cpSync(model, dir, { recursive: true });
    truncateSync(join(dir, 'model.safetensors'), 4000);
    expectBothRefuse(dir, 'dense', /truncated\/model\.safetensors: corrupt safetensors file: /);
  });

  it('a key codebook made for another head size', () => {
    const config = parseModelConfig(readJson(join(model, 'config.json')), 'tiny-llama');
    const right = writeRandomCodebooks(join(work, 'right'), config, 1);
    const other = writeRandomCodebooks(join(work, 'other'), { ...config, headDim: config.headDim / 2 }, 1);
    const cache = `commvq:key=${other.key},value=${right.value}`;
    expectBothRefuse(model, cache, new RegExp(`other/key-codebook-em-1bit\\.arrow: made for ${config.numKvHeads} KV heads of ${config.headDim / 2}, the model has ${config.numKvHeads} of ${config.headDim}$`));
  });

  it('still measures the model with its own codebooks', () => {
    const config = parseModelConfig(readJson(join(model, 'config.json')), 'tiny-llama');
    const right = writeRandomCodebooks(join(work, 'right'), config, 1);
    const r = measure(model, `dense,commvq:key=${right.key},value=${right.value}`);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(out, 'memory.json'))).toBe(true);
  });
});
