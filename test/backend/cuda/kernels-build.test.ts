/**
 * Every kernel compiles: where nvcc exists, `npm run build` (scripts/build-kernels.mjs) leaves a fatbin for each
 * kernels/*.cu, no older than its source. CI has nvcc and no GPU, so this is where a kernel that does not compile
 * fails the build. Without nvcc the check is skipped (the backend compiles with NVRTC at run time there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const hasNvcc = [process.env['NVCC'], 'nvcc', '/usr/local/cuda/bin/nvcc'].some(
  (c) => c !== undefined && spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0,
);

describe.skipIf(!hasNvcc)(`kernel fatbins${hasNvcc ? '' : ' (skipped: no nvcc here)'}`, () => {
  const sources = readdirSync(join(root, 'kernels')).filter((f) => f.endsWith('.cu'));

  it.each(sources)('build/kernels/ has a fresh fatbin for kernels/%s', (file) => {
    const fatbin = join(root, 'build', 'kernels', file.replace(/\.cu$/, '.fatbin'));
    expect(existsSync(fatbin), `${fatbin} missing: run npm run build (kernels/${file} may not compile)`).toBe(true);
    expect(statSync(fatbin).mtimeMs).toBeGreaterThanOrEqual(statSync(join(root, 'kernels', file)).mtimeMs);
    expect(statSync(fatbin).size).toBeGreaterThan(0);
  });
});
