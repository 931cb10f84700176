import koffi from 'koffi';

/**
 * Loading NVIDIA's shared libraries through koffi. Each library is tried by soname first (the loader's search path,
 * LD_LIBRARY_PATH included), then under the usual toolkit folders; CUDA 13 before CUDA 12.
 */

export type Library = ReturnType<typeof koffi.load>;
export type NativeFunction = ReturnType<Library['func']>;

const TOOLKIT_DIRS = ['/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib', '/usr/lib/x86_64-linux-gnu'];

/** Candidate paths for `lib<base>.so.<major>`: `libcublasLt` → `libcublasLt.so.13`, `.../lib64/libcublasLt.so.13`, ... */
export function candidates(base: string, majors: readonly number[]): string[] {
  const out: string[] = [];
  for (const major of majors) {
    out.push(`${base}.so.${major}`);
    for (const dir of TOOLKIT_DIRS) out.push(`${dir}/${base}.so.${major}`);
  }
  return out;
}

/** The first of `names` that loads, or null with every failure's text in `errors`. */
export function loadFirst(names: readonly string[], errors: string[] = []): Library | null {
  for (const name of names) {
    try {
      return koffi.load(name);
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return null;
}

/**
 * Declares a C function from a prototype, trying versioned symbol names first so that a newer driver's ABI is used
 * where it has one: `declare(lib, 'int cuEventElapsedTime(_Out_ float *ms, void *a, void *b)', ['_v2'])` binds
 * `cuEventElapsedTime_v2`, or `cuEventElapsedTime` on a driver without it.
 */
export function declare(lib: Library, prototype: string, suffixes: readonly string[] = []): NativeFunction {
  const match = /^(.*?)\b(\w+)\s*\(/.exec(prototype);
  if (!match) throw new Error(`bad prototype: ${prototype}`);
  const name = match[2]!;
  let last: unknown;
  for (const suffix of [...suffixes, '']) {
    try {
      return lib.func(prototype.replace(`${name}(`, `${name}${suffix}(`));
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

/** Normalizes a pointer or 64-bit value that koffi returned as a number, bigint or null. */
export function asBigInt(value: unknown): bigint {
  if (value === null || value === undefined) return 0n;
  return typeof value === 'bigint' ? value : BigInt(value as number);
}
