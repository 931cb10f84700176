/**
 * Launch constants are written once, in the kernel sources, and read by the launchers
 * (src/core/backend/cuda/kernel-constants.ts): every constant every launcher module asks for must be defined in its
 * kernel file, so that renaming or deleting one fails here, on a machine without a GPU. Also the reader itself on
 * small sources, and the sizes two sources must agree on.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kernelConstant, kernelConstantRequests, KernelSource } from '../../../src/core/backend/cuda/kernel-constants.js';
import { CommvqError } from '../../../src/core/errors.js';

const opsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'core', 'backend', 'cuda', 'ops');

describe('kernel launch constants', () => {
  it('every constant every launcher asks for is defined in its kernel source, as a positive integer', async () => {
    const modules = readdirSync(opsDir).filter((f) => f.endsWith('.ts'));
    for (const file of modules) await import(join(opsDir, file));
    const requests = kernelConstantRequests();
    const files = new Set(requests.map((r) => r.file));
    // each launcher module that launches kernels with fixed sizes asks for them
    for (const kernel of ['attention_decode', 'commvq_dequant', 'commvq_bits_gemm.cuh', 'commvq_key_logits', 'key_estep', 'key_mstep', 'key_gemm', 'value_sum_rows', 'add']) {
      expect(files, `no launcher reads kernels/${kernel}`).toContain(kernel);
    }
    const missing: string[] = [];
    for (const { file, names } of requests) {
      for (const name of names) {
        try {
          const v = kernelConstant(file, name);
          if (!(Number.isInteger(v) && v > 0)) missing.push(`${file} ${name} = ${v}`);
        } catch (e) {
          missing.push((e as Error).message);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('reads the values the launchers were written against', () => {
    expect(kernelConstant('commvq_dequant', 'DQ_TOKENS')).toBe(8);
    expect(kernelConstant('key_estep', 'THREADS')).toBe(1024); // #define THREADS (WARPS * 32)
    expect(kernelConstant('commvq_exact_logits', 'kTokens')).toBe(16); // kThreads / 8
    expect(kernelConstant('attention_decode', 'kTileKeys')).toBe(32);
    expect(kernelConstant('commvq_bits_gemm.cuh', 'TT')).toBe(64);
  });

  it('sizes the key-codebook kernels share agree', () => {
    for (const file of ['key_mstep', 'key_encode']) {
      for (const name of ['NH', 'KC']) expect(kernelConstant(file, name), `${file} ${name}`).toBe(kernelConstant('key_estep', name));
    }
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
