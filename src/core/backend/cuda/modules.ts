import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommvqError } from '../../errors.js';
import { checkCu, type CudaDriver } from './driver.js';
import { sourceFlags } from './kernel-source.js';
import { asBigInt } from './native.js';
import { compileWithNvrtc } from './nvrtc.js';

/**
 * Finds the machine code of a kernel module and loads it into the current context: `build/kernels/<name>.fatbin`
 * when `npm run build` compiled it with nvcc, else `kernels/<name>.cu` compiled by NVRTC for this GPU. Setting
 * COMMVQ_KERNELS=nvrtc skips the fatbins (to test the NVRTC path). Both paths are resolved from the package root,
 * found by walking up from this file, so the same code works from `src/` (tests) and from `dist/`.
 */

let root: string | undefined;

/** The folder holding commvq's package.json. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'commvq') {
      root = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`commvq's package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export class ModuleLoader {
  private readonly modules = new Map<string, bigint>();

  constructor(
    private readonly cu: CudaDriver,
    private readonly computeCapability: readonly [number, number],
  ) {}

  /** The CUmodule of `kernels/<name>.cu`, loaded on first use. */
  module(name: string): bigint {
    const loaded = this.modules.get(name);
    if (loaded !== undefined) return loaded;
    const image = this.image(name);
    const out: [unknown] = [null];
    checkCu(this.cu.cuModuleLoadData(out, image), `cuModuleLoadData(${name})`);
    const handle = asBigInt(out[0]);
    this.modules.set(name, handle);
    return handle;
  }

  dispose(): void {
    for (const handle of this.modules.values()) this.cu.cuModuleUnload(handle);
    this.modules.clear();
  }

  private image(name: string): Uint8Array {
    const base = packageRoot();
    const fatbin = join(base, 'build', 'kernels', `${name}.fatbin`);
    if (process.env['COMMVQ_KERNELS'] !== 'nvrtc' && existsSync(fatbin)) return readFileSync(fatbin);
    const kernelsDir = join(base, 'kernels');
    const file = join(kernelsDir, `${name}.cu`);
    if (!existsSync(file)) {
      throw new CommvqError(`kernel module ${name} not found: neither ${fatbin} nor ${file} exists`, 'reinstall commvq');
    }
    const source = readFileSync(file, 'utf8');
    const headers = readdirSync(kernelsDir)
      .filter((f) => f.endsWith('.cuh'))
      .sort()
      .map((f) => readFileSync(join(kernelsDir, f), 'utf8'))
      .join('\0');
    const [major, minor] = this.computeCapability;
    return compileWithNvrtc({ name, source, includeDir: kernelsDir, headers, flags: sourceFlags(source) }, major, minor);
  }
}
