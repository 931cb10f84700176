/**
 * The `// nvcc-flags:` reader that scripts/build-kernels.mjs (nvcc) and the NVRTC fallback both compile with: what it
 * reads from a source, and what the kernels in kernels/ ask for.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sourceFlags } from '../../../src/core/backend/cuda/kernel-source.js';
import { REPO_ROOT } from '../../helpers/fixtures.js';

describe('sourceFlags', () => {
  it('reads the options of the line, wherever it sits in the header', () => {
    expect(sourceFlags('// softmax.cu — rows\n//\n// nvcc-flags: --use_fast_math\n\n#include <cuda_bf16.h>\n')).toEqual([
      '--use_fast_math',
    ]);
    expect(sourceFlags('// nvcc-flags:   --use_fast_math \t --ftz=true  \n')).toEqual(['--use_fast_math', '--ftz=true']);
    expect(sourceFlags('// nvcc-flags: --use_fast_math\r\n#include <cuda_bf16.h>\r\n')).toEqual(['--use_fast_math']);
  });

  it('gives none without the line, for an empty line, or where the line is not at the start of a line', () => {
    expect(sourceFlags('// rope.cu — exact math\n#include <cuda_bf16.h>\n')).toEqual([]);
    expect(sourceFlags('// nvcc-flags:\n')).toEqual([]);
    expect(sourceFlags('  // nvcc-flags: --use_fast_math\n')).toEqual([]);
    expect(sourceFlags('/* // nvcc-flags: --use_fast_math */\n')).toEqual([]);
  });

  it('takes the first line only', () => {
    expect(sourceFlags('// nvcc-flags: --use_fast_math\n// nvcc-flags: --ftz=false\n')).toEqual(['--use_fast_math']);
  });
});

describe('the flags of kernels/*.cu', () => {
  const dir = join(REPO_ROOT, 'kernels');
  const flags = new Map(
    readdirSync(dir)
      .filter((f) => f.endsWith('.cu'))
      .map((f) => [f, sourceFlags(readFileSync(join(dir, f), 'utf8'))]),
  );

  it('are options that nvcc and NVRTC both accept, since either compiler may build the file', () => {
    const both = new Set(['--use_fast_math', '--ftz=true', '--prec-div=false', '--prec-sqrt=false', '--fmad=true']);
    for (const [file, f] of flags) for (const flag of f) expect(both, `${file}: ${flag}`).toContain(flag);
  });

  it('are read from the real sources: rope.cu asks for exact math (no line), value_attention_dv.cu for fast math', () => {
    expect(flags.get('rope.cu')).toEqual([]);
    expect(flags.get('value_attention_dv.cu')).toEqual(['--use_fast_math']);
  });
});
