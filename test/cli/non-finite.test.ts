/**
 * A model with a NaN weight, as the commands meet it (issue 17, item 9): generate, collect-kv and eval niah refuse it
 * with one line naming the tensor and exit 1; with --allow-nonfinite it loads, and the NaN activations it computes are refused
 * where they would be used (generate's logits, collect-kv's K/V) with one line, writing no window and leaving nothing
 * that blocks a rerun. The model is a copy of the tiny-llama fixture with one element of layer 0's down_proj set to
 * NaN: it reaches every token's hidden state, so layer 0's keys and values stay finite and layer 1's do not. The flag
 * itself is one definition shared by every command that loads a model.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { allowNonFiniteFlag } from '../../src/cli/flags.js';
import CollectKv from '../../src/commands/collect-kv.js';
import EvalInfinitebench from '../../src/commands/eval/infinitebench.js';
import EvalLongbench from '../../src/commands/eval/longbench.js';
import EvalNiah from '../../src/commands/eval/niah.js';
import Generate from '../../src/commands/generate.js';
import MeasureMemory from '../../src/commands/measure-memory.js';
import Pipeline from '../../src/commands/pipeline.js';
import TrainValue from '../../src/commands/train-value.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { fixtureDir, haveFixtures } from '../helpers/fixtures.js';
import { poisonedCopy } from '../helpers/model-copies.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-nonfinite-'));
const poisoned = haveFixtures ? poisonedCopy(fixtureDir('tiny-llama'), 'model.layers.0.mlp.down_proj.weight', NaN) : '';
afterAll(() => [work, poisoned].forEach((d) => d && rmSync(d, { recursive: true, force: true })));
const corpus = join(work, 'corpus.jsonl');
writeFileSync(corpus, Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `Note ${i}. ` + 'The quick brown fox jumps over the lazy dog. '.repeat(4) })).join('\n'));

const TENSOR_LINE = /model\.safetensors: tensor 'model\.layers\.0\.mlp\.down_proj\.weight' has 1 NaN\/Inf among its 196608 values/;
const collect = (model: string, out: string, ...extra: string[]) =>
  runCli(['collect-kv', '--model', model, '--data', corpus, '--out', out, '--tokens', '128', '--seq-len', '64', '--device', 'cpu', ...extra]);
/** Files under a folder with bytes in them (a lock or an empty folder blocks nothing). */
const filesWithData = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile() && statSync(join(dir, f)).size > 0) : [];

describe('--allow-nonfinite', () => {
  it('is one flag, defined once, on every command that loads a model', () => {
    for (const command of [Generate, CollectKv, EvalNiah, EvalLongbench, EvalInfinitebench, MeasureMemory, TrainValue, Pipeline]) {
      expect(command.flags['allow-nonfinite'], command.name).toBe(allowNonFiniteFlag);
    }
  });
});

describe.skipIf(!haveFixtures)('a model with a NaN weight', () => {
  it('generate: one line naming the tensor, exit 1, nothing on stdout', () => {
    const r = runCli(['generate', '--model', poisoned, '--prompt', 'hello', '--max-new-tokens', '4', '--device', 'cpu']);
    expectOneLineError(r, TENSOR_LINE, { silentStdout: true });
    expect(r.stderr).toMatch(/hint: .*--allow-nonfinite/);
  });

  it('generate --allow-nonfinite: the NaN logits are refused in one line instead of token 0 printed four times', () => {
    const r = runCli(['generate', '--model', poisoned, '--prompt', 'hello', '--max-new-tokens', '4', '--device', 'cpu', '--allow-nonfinite']);
    expectOneLineError(r, /^commvq: the model's logits for new token 0 have 512 NaN\/Inf among their 512 values/, { silentStdout: true });
  });

  it('eval niah: one line naming the tensor, exit 1, before the run folder is written', () => {
    const out = join(work, 'niah');
    const r = runCli(['eval', 'niah', '--model', poisoned, '--out', out, '--lengths', '64', '--depths', '1', '--device', 'cpu']);
    expectOneLineError(r, TENSOR_LINE, { silentStdout: true });
    expect(filesWithData(out)).toEqual([]);
  });

  it('collect-kv: one line naming the tensor, exit 1, and no manifest or K/V written', () => {
    const out = join(work, 'refused');
    expectOneLineError(collect(poisoned, out), TENSOR_LINE, { silentStdout: true });
    expect(filesWithData(out)).toEqual([]);
  });

  it('collect-kv --allow-nonfinite: layer 1 named, no window written, and a rerun with a sound model on the same folder completes', () => {
    const out = join(work, 'allowed');
    const r = collect(poisoned, out, '--allow-nonfinite');
    expectOneLineError(r, /layer 1's keys are not finite at position 0 of window 0 \(8192 NaN\/Inf in f16\); nothing of that window was written/, { silentStdout: true });
    expect(existsSync(join(out, 'manifest.json'))).toBe(false);
    expect(existsSync(join(out, 'kv', 'key-L001.arrows'))).toBe(false);
    const rerun = collect(fixtureDir('tiny-llama'), out);
    expect(rerun.status, rerun.stderr).toBe(0);
    expect(rerun.stdout).toMatch(/^2 windows, 128 tokens per layer, 2 layers/);
  });
});
