/**
 * Launch constants are written once, in the kernel sources, and read by the launchers
 * (src/core/backend/cuda/kernel-constants.ts): the reader on small sources and on the kernels, and the sizes two
 * sources must agree on.
 */
import { describe, expect, it } from 'vitest';
import { kernelConstant, KernelSource } from '../../src/core/backend/cuda/kernel-constants.js';
import { CommvqError } from '../../src/core/errors.js';

describe('kernel launch constants', () => {
  it('reads the values the launchers were written against', () => {
    expect(kernelConstant('commvq_dequant', 'DQ_TOKENS')).toBe(8);
    expect(kernelConstant('key_estep', 'THREADS')).toBe(1024); // #define THREADS (WARPS * 32)
    expect(kernelConstant('commvq_exact_logits', 'kTokens')).toBe(16); // kThreads / 8
    expect(kernelConstant('attention_decode', 'kTileKeys')).toBe(32);
    expect(kernelConstant('commvq_bits_gemm.cuh', 'TT')).toBe(64);
  });

  it('sizes two sources share agree: the key-codebook kernels', () => {
    for (const name of ['NH', 'KC']) expect(kernelConstant('key_estep', name), name).toBe(kernelConstant('key_mstep', name));
  });
});

describe('kernel source reader', () => {
  const source = [
    '// header: the launch is grid (n / 8), block 256',
    '#include "other.cuh"',
    '#define TOKENS 8  // tokens per block',
    '#define PAIR(a, b) ((a) + (b))',
    '#define HEX 0x10u',
    'namespace {',
    'constexpr int kWarps = 4;',
    'constexpr int kThreads = kWarps * 32;  // one warp per unit',
    'constexpr unsigned kShift = (1 << 4) + 65 % 8 - 9 / 2;',
    'constexpr float kScale = 1.5f;',
    'constexpr int kLoop = kLoop + 1;',
    '}  // namespace',
    '__global__ void f() {',
    '  constexpr int kInside = 3;',
    '}',
  ].join('\n');
  const header = new KernelSource('other.cuh', 'constexpr int kFromHeader = 7;\n');
  const s = new KernelSource('test.cu', source, () => header);

  it('evaluates #define and constexpr integer expressions, names from the file and its headers', () => {
    expect(s.value('TOKENS')).toBe(8);
    expect(s.value('HEX')).toBe(16);
    expect(s.value('kThreads')).toBe(128);
    expect(s.value('kShift')).toBe(16 + 1 - 4);
    expect(s.value('kFromHeader')).toBe(7);
  });

  it.each([
    ['kInside', /defines no constant kInside/], // inside a function: not a launch constant
    ['PAIR', /defines no constant PAIR/], // a function-like macro
    ['kMissing', /defines no constant kMissing/],
    ['kScale', /integer expressions/],
    ['kLoop', /in terms of itself/],
  ])('refuses %s', (name, message) => {
    expect(() => s.value(name)).toThrow(CommvqError);
    expect(() => s.value(name)).toThrow(message);
  });

  it('refuses a name defined twice with different values', () => {
    expect(() => new KernelSource('twice.cu', '#define A 1\n#define A 2\n').value('A')).toThrow(/twice/);
  });
});
