/**
 * `commvq import-reference` and `commvq export-reference` as a user runs them (dist/): what they print, their --json,
 * the base model linked into an exported checkpoint, and a bad input as one line with nothing written.
 */
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { fixtureDir, haveFixture } from '../helpers/fixtures.js';
import { writeReferenceSet } from '../helpers/reference-set.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-refcli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!haveFixture('tiny-llama'))('import-reference and export-reference', () => {
  const model = fixtureDir('tiny-llama');
  const set = writeReferenceSet(join(work, 'released'), model, { bits: 2, residuals: 2, halfSize: 4, extraValueTensor: true });
  const run = join(work, 'run');

  it('imports, printing the geometry, what was left and where the codebooks went', () => {
    const r = runCli(['import-reference', '--values', set.values, '--keys', set.keys, '--out', run]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('2-bit: 2 layers; keys R = 2, G = 1, N_h = 4, P = 64; values N_c = 256 (BF16)');
    expect(r.stdout).toContain('centres skipped');
    expect(r.stdout).toMatch(/not copied: \d+ LLM tensors of /);
    expect(r.stdout).toContain('unused (1):\n  model.layers.0.self_attn.value_vq_model.codebook_usage (F32 [4])');
    expect(r.stdout).toContain(`→ ${join(run, 'key-codebook-em-2bit.arrow')}`);
  });

  it('exports with --json, linking the base model so the folder is a whole checkpoint, and imports that again', () => {
    const r = runCli(['export-reference', run, '--out', join(work, 'out'), '--model', model, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { keysDir: string; valuesDir: string; valueDtype: string; modelTensors: number };
    expect(out).toMatchObject({ keysDir: join(work, 'out', 'Llama-3.1-8B-Instruct-CommVQ-2bit-codebook'), valueDtype: 'BF16' });
    expect(lstatSync(join(out.valuesDir, 'model.safetensors')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(out.valuesDir, 'tokenizer.json')).isSymbolicLink()).toBe(true);
    const index = JSON.parse(readFileSync(join(out.valuesDir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    expect(index.weight_map['model.norm.weight']).toBe('model.safetensors');
    expect(index.weight_map['model.layers.1.self_attn.value_vq_model.embedding']).toBe('value_vq_model.safetensors');
    expect(Object.keys(index.weight_map)).toHaveLength(out.modelTensors + 2 * 8);
    const again = runCli(['import-reference', '--values', out.valuesDir, '--keys', out.keysDir, '--out', join(work, 'run2'), '--check-centres', '--json']);
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ residuals: 2, unused: [], modelTensors: out.modelTensors, centres: { checked: true, maxAbsError: 0 } });
  });

  it('a missing key file: one line naming it, no run folder', () => {
    const broken = writeReferenceSet(join(work, 'broken'), model, { bits: 2, residuals: 2, halfSize: 4 });
    unlinkSync(join(broken.keys, '001_0.pt'));
    const out = join(work, 'never');
    expectOneLineError(runCli(['import-reference', '--values', broken.values, '--keys', broken.keys, '--out', out]), /^commvq: .*-codebook: 001_0\.pt is missing \(layer 1, group 0\)$/, { silentStdout: true });
    expect(existsSync(out)).toBe(false);
  });
});
