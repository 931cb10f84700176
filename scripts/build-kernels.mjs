#!/usr/bin/env node
// Compiles every kernels/*.cu into build/kernels/<name>.fatbin with nvcc: SASS for sm_80, sm_86, sm_89 and sm_90,
// plus compute_90 PTX so newer GPUs can JIT it. A file is rebuilt only when it or a kernels/*.cuh header is newer
// than its fatbin. Two compiles run at a time (CI machines have 2 cores). Per-file options come from the source's
// `// nvcc-flags: ...` line (e.g. --use_fast_math); files without it, such as rope.cu, build with exact math. The line
// is read by src/core/backend/cuda/kernel-source.ts, the reader the NVRTC fallback uses too, imported from tsc's
// output in dist/ (`npm run build` runs tsc first).
//
// Without nvcc this prints one line and exits 0 (and needs no dist/): the backend compiles kernels at run time with
// NVRTC instead.
//
//   node scripts/build-kernels.mjs            # build what changed
//   node scripts/build-kernels.mjs --force    # rebuild everything

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'kernels');
const out = join(root, 'build', 'kernels');
const ARCHS = ['80', '86', '89', '90'];
const PARALLEL = Math.max(1, Math.min(2, cpus().length));

function findNvcc() {
  const candidates = [process.env.NVCC, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter(Boolean);
  for (const c of candidates) {
    if (spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) return c;
  }
  return null;
}

// The `// nvcc-flags:` reader from tsc's output, or null before tsc has run.
async function loadSourceFlags() {
  const file = join(root, 'dist', 'core', 'backend', 'cuda', 'kernel-source.js');
  return existsSync(file) ? (await import(pathToFileURL(file).href)).sourceFlags : null;
}

function compile(nvcc, sourceFlags, name) {
  const file = join(src, `${name}.cu`);
  const target = join(out, `${name}.fatbin`);
  const gencode = ARCHS.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
  gencode.push('-gencode', 'arch=compute_90,code=compute_90');
  const args = ['-fatbin', '-O3', '-std=c++17', `-I${src}`, ...sourceFlags(readFileSync(file, 'utf8')), ...gencode];
  args.push('-o', `${target}.tmp`, file);
  return new Promise((resolve) => {
    const child = spawn(nvcc, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      if (code === 0) renameSync(`${target}.tmp`, target); // never leave a half-written fatbin behind
      resolve({ name, ok: code === 0, stderr });
    });
  });
}

async function main() {
  const nvcc = findNvcc();
  if (!nvcc) {
    console.log('build-kernels: nvcc not found; kernels will be compiled at run time with NVRTC');
    return 0;
  }
  const sourceFlags = await loadSourceFlags();
  if (!sourceFlags) {
    console.error('build-kernels: dist/ not built: run `npm run build` (tsc first, then this script)');
    return 1;
  }
  mkdirSync(out, { recursive: true });
  const force = process.argv.includes('--force');
  const entries = readdirSync(src);
  const headerTime = Math.max(0, ...entries.filter((f) => f.endsWith('.cuh')).map((f) => statSync(join(src, f)).mtimeMs));
  const names = entries.filter((f) => f.endsWith('.cu')).map((f) => f.slice(0, -3)).sort();
  const stale = names.filter((name) => {
    const target = join(out, `${name}.fatbin`);
    if (force || !existsSync(target)) return true;
    const built = statSync(target).mtimeMs;
    return built < statSync(join(src, `${name}.cu`)).mtimeMs || built < headerTime;
  });
  if (stale.length === 0) {
    console.log(`build-kernels: ${names.length} fatbins up to date`);
    return 0;
  }
  const started = Date.now();
  const queue = [...stale];
  const failures = [];
  const worker = async () => {
    for (let name = queue.shift(); name; name = queue.shift()) {
      const r = await compile(nvcc, sourceFlags, name);
      if (!r.ok) failures.push(r);
      else if (r.stderr.trim()) process.stderr.write(r.stderr);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  for (const f of failures) process.stderr.write(`build-kernels: kernels/${f.name}.cu failed:\n${f.stderr}\n`);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`build-kernels: compiled ${stale.length - failures.length}/${stale.length} kernels in ${seconds} s`);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
