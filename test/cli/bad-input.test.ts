/**
 * Bad input gets one clear line naming the file and the problem, and exit code 1: never a stack trace. The broken
 * model folders are made here from the built-in demo model, so these tests need no fixtures.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-bad-'));
const good = join(work, 'good');
writeDemoModel(good);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of the demo model, changed by `edit`. */
function broken(name: string, edit: (dir: string) => void): string {
  const dir = join(work, name);
  cpSync(good, dir, { recursive: true });
  edit(dir);
  return dir;
}

function editJson(path: string, change: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(json);
  writeFileSync(path, JSON.stringify(json));
}

/** Rewrites the safetensors header with `change`, keeping the data section. */
function editHeader(dir: string, change: (header: Record<string, { data_offsets: number[] }>) => void): void {
  const path = join(dir, 'model.safetensors');
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: number[] }>;
  change(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, bytes.subarray(8 + n)]));
}

function expectGenerateError(args: string[], pattern: RegExp): void {
  expectOneLineError(runCli(['generate', ...args, '--device', 'cpu', '--max-new-tokens', '2']), pattern, { silentStdout: true });
}

const model = (dir: string) => ['--model', dir, '--prompt', 'hello'];

describe('generate refuses bad input with one line', () => {
  it('a missing model folder', () => expectGenerateError(model(join(work, 'nope')), /nope: model folder not found/));

  it('a prompt chunk with a faithful CommVQ prefill', () =>
    expectGenerateError(['--demo', '--prompt', 'hello', '--cache', 'commvq:key=k.arrow,value=v.arrow,chunk=8'], /^commvq: --cache commvq:key=k\.arrow,value=v\.arrow,chunk=8: chunk needs prefill=strict$/));

  it('a missing config.json', () => {
    const dir = broken('no-config', (d) => rmSync(join(d, 'config.json')));
    expectGenerateError(model(dir), /no-config\/config\.json: file not found/);
  });

  it('a missing weights file', () => {
    const dir = broken('no-weights', (d) => rmSync(join(d, 'model.safetensors')));
    expectGenerateError(model(dir), /no-weights: no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it('a truncated safetensors file', () => {
    const dir = broken('truncated', (d) => truncateSync(join(d, 'model.safetensors'), 4000));
    expectGenerateError(model(dir), /truncated\/model\.safetensors: corrupt safetensors file: (header length|tensor .* data offsets)/);
  });

  it('a header length past the end of the file', () => {
    const dir = broken('long-header', (d) => {
      const path = join(d, 'model.safetensors');
      const bytes = readFileSync(path);
      bytes.writeBigUInt64LE(BigInt(bytes.length * 2), 0);
      writeFileSync(path, bytes);
    });
    expectGenerateError(model(dir), /long-header\/model\.safetensors: corrupt safetensors file: header length \d+ runs past the end/);
  });

  it('a header that is not JSON', () => {
    const dir = broken('bad-json', (d) => {
      const path = join(d, 'model.safetensors');
      const bytes = readFileSync(path);
      bytes.write('{oops: ', 8); // unquoted key: invalid JSON
      writeFileSync(path, bytes);
    });
    expectGenerateError(model(dir), /bad-json\/model\.safetensors: corrupt safetensors file: header is not valid JSON/);
  });

  it('tensor offsets out of range', () => {
    const dir = broken('bad-offsets', (d) =>
      editHeader(d, (h) => {
        h['model.norm.weight']!.data_offsets = [0, 1e9];
      }),
    );
    expectGenerateError(model(dir), /bad-offsets\/model\.safetensors: corrupt safetensors file: tensor 'model\.norm\.weight' data offsets \[0, 1000000000\] are outside/);
  });

  it('a config missing a field', () => {
    const dir = broken('no-hidden', (d) => editJson(join(d, 'config.json'), (c) => delete c.hidden_size));
    expectGenerateError(model(dir), /no-hidden\/config\.json: missing field 'hidden_size'/);
  });

  it('an unsupported architecture', () => {
    const dir = broken('gpt2', (d) => editJson(join(d, 'config.json'), (c) => (c.architectures = ['GPT2LMHeadModel'])));
    expectGenerateError(model(dir), /gpt2\/config\.json: unsupported architecture GPT2LMHeadModel \(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM\)/);
  });

  it('an unsupported RoPE type', () => {
    const dir = broken('yarn', (d) => editJson(join(d, 'config.json'), (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 })));
    expectGenerateError(model(dir), /yarn\/config\.json: unsupported RoPE type 'yarn'/);
  });

  it('weights whose shape disagrees with the config', () => {
    const dir = broken('wide', (d) => editJson(join(d, 'config.json'), (c) => (c.intermediate_size = 512)));
    expectGenerateError(model(dir), /wide: tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' has shape \[384, 128\], config\.json implies \[512, 128\]/);
  });

  it('a prompt longer than the context', () => {
    const dir = broken('short-context', (d) => editJson(join(d, 'config.json'), (c) => (c.max_position_embeddings = 8)));
    expectGenerateError(['--model', dir, '--prompt', 'a prompt of more than eight bytes'], /the prompt is 33 tokens, longer than the model's context of 8/);
  });

  it('a missing prompt file', () => expectGenerateError(['--model', good, '--prompt-file', join(work, 'missing.txt')], /^commvq: --prompt-file \S*missing\.txt: file not found$/));

  it('--chat without a chat template', () => expectGenerateError([...model(good), '--chat'], /the tokenizer has no chat template/));

  it('an unknown device', () => {
    const r = runCli(['generate', ...model(good), '--device', 'tpu']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("commvq: unknown device 'tpu' (use auto, cpu, cuda or cuda:N)");
  });

  it('errors become JSON with --json', () => {
    const r = runCli(['generate', ...model(join(work, 'nope')), '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ error: { message: expect.stringMatching(/nope: model folder not found/) } });
  });
});
