import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CommvqError } from '../../errors.js';
import { asBigInt, candidates, declare, loadFirst, type Library, type NativeFunction } from './native.js';

/**
 * Run-time compilation of a kernel source with NVRTC, for GPU machines without nvcc (no fatbin was built). The
 * result is a CUBIN for the device's exact architecture, cached on disk under
 * `$XDG_CACHE_HOME/commvq/kernels` (or `~/.cache/...`) keyed by a hash of the source, its headers, the options and
 * the NVRTC version, so the compile cost is paid once per machine.
 */

interface Nvrtc {
  version: string;
  nvrtcCreateProgram: NativeFunction;
  nvrtcCompileProgram: NativeFunction;
  nvrtcGetProgramLogSize: NativeFunction;
  nvrtcGetProgramLog: NativeFunction;
  nvrtcGetCUBINSize: NativeFunction;
  nvrtcGetCUBIN: NativeFunction;
  nvrtcDestroyProgram: NativeFunction;
  nvrtcGetErrorString: NativeFunction;
}

let nvrtc: Nvrtc | undefined;

function loadNvrtc(): Nvrtc {
  if (nvrtc) return nvrtc;
  const errors: string[] = [];
  const lib: Library | null = loadFirst(candidates('libnvrtc', [13, 12]), errors);
  if (!lib) {
    throw new CommvqError(
      `no compiled kernels and no NVRTC to compile them (libnvrtc.so.13 / .12): ${errors[0] ?? 'not found'}`,
      'run `npm run build` where nvcc is installed (writes build/kernels/*.fatbin), or install the CUDA toolkit ' +
        'runtime libraries (NVRTC) on this machine',
    );
  }
  const d = (proto: string): NativeFunction => declare(lib, proto);
  const major = [0];
  const minor = [0];
  d('int nvrtcVersion(_Out_ int *major, _Out_ int *minor)')(major, minor);
  nvrtc = {
    version: `${major[0]}.${minor[0]}`,
    nvrtcCreateProgram: d(
      'int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int n, void *headers, void *names)',
    ),
    nvrtcCompileProgram: d('int nvrtcCompileProgram(void *prog, int n, const char **options)'),
    nvrtcGetProgramLogSize: d('int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)'),
    nvrtcGetProgramLog: d('int nvrtcGetProgramLog(void *prog, void *log)'),
    nvrtcGetCUBINSize: d('int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)'),
    nvrtcGetCUBIN: d('int nvrtcGetCUBIN(void *prog, void *cubin)'),
    nvrtcDestroyProgram: d('int nvrtcDestroyProgram(_Inout_ void **prog)'),
    nvrtcGetErrorString: d('const char *nvrtcGetErrorString(int result)'),
  };
  return nvrtc;
}

export interface NvrtcSource {
  /** module name, e.g. `rms_norm` */
  readonly name: string;
  readonly source: string;
  /** folder holding the `.cuh` headers the source includes */
  readonly includeDir: string;
  /** contents of those headers, for the cache key */
  readonly headers: string;
  /** extra nvcc-style options from the source's `// nvcc-flags:` line */
  readonly flags: readonly string[];
}

/** A CUBIN of `src` for compute capability `major.minor`, from the disk cache or compiled now. */
export function compileWithNvrtc(src: NvrtcSource, major: number, minor: number): Uint8Array {
  const api = loadNvrtc();
  const options = [
    `--gpu-architecture=sm_${major}${minor}`,
    '--std=c++17',
    `-I${src.includeDir}`,
    ...(existsSync('/usr/local/cuda/include') ? ['-I/usr/local/cuda/include'] : []),
    ...src.flags,
  ];
  const key = createHash('sha256')
    .update([api.version, options.join(' '), src.source, src.headers].join('\0'))
    .digest('hex')
    .slice(0, 20);
  const dir = join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'commvq', 'kernels');
  const file = join(dir, `${src.name}-sm${major}${minor}-${key}.cubin`);
  if (existsSync(file)) return readFileSync(file);

  const cubin = compile(api, src, options);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${file}.tmp`, cubin);
    renameSync(`${file}.tmp`, file); // atomic, so a parallel process never reads half a file
  } catch {
    // an unwritable cache only costs a recompile next time
  }
  return cubin;
}

function compile(api: Nvrtc, src: NvrtcSource, options: string[]): Uint8Array {
  const prog: [unknown] = [null];
  check(api, api.nvrtcCreateProgram(prog, src.source, `${src.name}.cu`, 0, null, null), 'nvrtcCreateProgram');
  const handle = asBigInt(prog[0]);
  try {
    const rc = api.nvrtcCompileProgram(handle, options.length, options) as number;
    if (rc !== 0) {
      const log = programLog(api, handle);
      throw new CommvqError(
        `NVRTC could not compile kernels/${src.name}.cu: ${log.split('\n').find((l) => l.includes('error')) ?? log}`,
        'the kernel source and this NVRTC disagree; build the fatbins with nvcc (`npm run build`) instead',
      );
    }
    const size = [0];
    check(api, api.nvrtcGetCUBINSize(handle, size), 'nvrtcGetCUBINSize');
    const cubin = Buffer.alloc(size[0]!);
    check(api, api.nvrtcGetCUBIN(handle, cubin), 'nvrtcGetCUBIN');
    return cubin;
  } finally {
    api.nvrtcDestroyProgram([handle]);
  }
}

function programLog(api: Nvrtc, handle: bigint): string {
  const size = [0];
  if (api.nvrtcGetProgramLogSize(handle, size) !== 0 || size[0]! <= 1) return '(no log)';
  const log = Buffer.alloc(size[0]!);
  api.nvrtcGetProgramLog(handle, log);
  return log.toString('utf8', 0, size[0]! - 1);
}

function check(api: Nvrtc, rc: number, call: string): void {
  if (rc !== 0) throw new CommvqError(`NVRTC call ${call} failed: ${api.nvrtcGetErrorString(rc)}`);
}
