/**
 * What a kernel source says about how to compile it. A `kernels/*.cu` file may carry one line
 * `// nvcc-flags: --use_fast_math ...` at the start of a line; both compilers read it through this one function:
 * scripts/build-kernels.mjs (nvcc at build time, importing it from dist/) and the NVRTC fallback in modules.ts.
 * Dependency-free, so the build script can load it without the CUDA bindings.
 */

const FLAGS_LINE = /^\/\/ nvcc-flags:(.*)$/m;

/**
 * The options a kernel source asks for on its `// nvcc-flags:` line, in order; none without the line. Only the first
 * such line counts.
 *
 * @example
 * sourceFlags('// nvcc-flags: --use_fast_math\n#include <cuda_bf16.h>'); // ['--use_fast_math']
 * sourceFlags('#include <cuda_bf16.h>'); // []
 */
export function sourceFlags(source: string): string[] {
  const line = FLAGS_LINE.exec(source);
  return line ? line[1]!.trim().split(/\s+/).filter(Boolean) : [];
}
