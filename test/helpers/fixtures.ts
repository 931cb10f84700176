/**
 * The reference fixtures in ../shared/fixtures (tiny Llama and Qwen2 models with transformers outputs). A clean
 * clone elsewhere has no ../shared: tests that need them skip with a message instead of failing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES_DIR = process.env.COMMVQ_FIXTURES ?? resolve(REPO_ROOT, '../shared/fixtures');
export const FIXTURE_MODELS = ['tiny-llama', 'tiny-qwen2'] as const;
export type FixtureModel = (typeof FIXTURE_MODELS)[number];

export const haveFixtures = existsSync(join(FIXTURES_DIR, 'tiny-llama', 'reference.safetensors'));
if (!haveFixtures) console.warn(`skipping fixture tests: ${FIXTURES_DIR} not found (it is ../shared/fixtures beside the repo)`);

/** Whether one fixture model is present (a GPU run may carry only some of them). */
export function haveFixture(name: FixtureModel): boolean {
  return existsSync(join(FIXTURES_DIR, name, 'reference.safetensors'));
}

export function fixtureDir(name: FixtureModel): string {
  return join(FIXTURES_DIR, name);
}

/** The transformers reference outputs of one fixture model (see ../shared/fixtures/README.md). */
export class FixtureReference {
  readonly prompts: string[];
  private readonly file: SafetensorsFile;

  constructor(readonly model: FixtureModel) {
    this.file = new SafetensorsFile(join(fixtureDir(model), 'reference.safetensors'));
    this.prompts = (JSON.parse(readFileSync(join(fixtureDir(model), 'reference.json'), 'utf8')) as { prompts: string[] }).prompts;
  }

  /** An int64 tensor's values as numbers (token ids). */
  ids(name: string): number[] {
    const bytes = this.file.read(name);
    return Array.from(new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8), Number);
  }

  /** An f32 tensor's values. */
  f32(name: string): Float32Array {
    const bytes = this.file.read(name);
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }

  close(): void {
    this.file.close();
  }
}
