/**
 * `commvq generate --cache commvq:…,compress=keys|values` on the tiny-llama fixture (CPU) with seeded random codebook
 * files (issue 18's ablations): both run past the exact window, say which half is exact, and hold more bytes than
 * CommVQ itself by exactly the exact half's rows (f32 rows of D instead of packed codes) per compressed token and layer.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commvqBytesPerToken } from '../../src/core/memory/cache-accounting.js';
import { parseModelConfig } from '../../src/core/model/config.js';
import { compressorShape } from '../../src/core/values/value-compressor.js';
import { writeRandomCodebooks } from '../helpers/codebooks.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';
import { FixtureReference, fixtureDir, haveFixture } from '../helpers/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-ablation-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!haveFixture('tiny-llama'))('generate --cache commvq:…,compress= on tiny-llama', () => {
  const model = haveFixture('tiny-llama') ? fixtureDir('tiny-llama') : '';
  const config = haveFixture('tiny-llama') ? parseModelConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')), model) : undefined;
  const files = config ? writeRandomCodebooks(join(work, 'run'), config, 1) : { key: '', value: '' };
  const promptFile = join(work, 'prompt.txt');
  if (config) writeFileSync(promptFile, new FixtureReference('tiny-llama').prompts[1]!); // 709 tokens: 5 windows of 128 compressed

  /** generate's cache bytes (from its stderr line) and that line, with `compress` (or none). */
  function run(compress?: string): { bytes: number; line: string } {
    const cache = `commvq:key=${files.key},value=${files.value}${compress ? `,compress=${compress}` : ''}`;
    const r = runCli(['generate', '--model', model, '--prompt-file', promptFile, '--max-new-tokens', '3', '--device', 'cpu', '--cache', cache]);
    expect(r.status, r.stderr).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.includes(' bytes]'))!;
    return { bytes: Number(/ (\d+) bytes\]/.exec(line)![1]), line };
  }

  it('compress=keys and compress=values run, and pay an f32 row of D per compressed token for their exact half', () => {
    const both = run();
    const { numLayers: L, numKvHeads, headDim } = config!;
    const D = numKvHeads * headDim;
    // R = 2 (writeRandomCodebooks), N_c of a 1-bit compressor of D channels
    const packed = commvqBytesPerToken({ numLayers: L, kvHeads: numKvHeads, headDim }, { residuals: 2, codeBits: compressorShape(1, D).codeBits, window: 128 });
    const compressed = ['keys', 'values'].map((compress) => {
      const ablated = run(compress);
      expect(ablated.line).toMatch(new RegExp(`commvq cache \\(faithful prefill, compress=${compress}\\)`));
      // the extra bytes: N compressed tokens × L layers × (an exact f32 row − the packed half it replaces)
      const extra = (ablated.bytes - both.bytes) / (L * (4 * D - (compress === 'keys' ? packed.value : packed.key)));
      return extra;
    });
    expect(compressed[0]).toBe(compressed[1]);
    expect(compressed[0]! % 128).toBe(0); // whole windows of W = 128
    expect(compressed[0]).toBeGreaterThanOrEqual(4 * 128); // the 709-token prompt compresses at least 4 windows
    expect(both.line).not.toMatch(/compress=/);
  });

  it('refuses a compress value not in the grammar in one line', () => {
    expectOneLineError(runCli(['generate', '--demo', '--prompt', 'hi', '--device', 'cpu', '--cache', 'commvq:bits=1,compress=all']), /--cache commvq:bits=1,compress=all: compress is keys or values or both, not all/);
  });
});
