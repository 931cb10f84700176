import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../../errors.js';
import { packageRoot } from './modules.js';

/**
 * Launch constants read from the kernel sources, so that each is written once, beside its kernel's header comment:
 * a launcher asks for the names it needs and gets the values of the file-scope definitions
 *
 *   #define DQ_TOKENS 8                          (kernels/commvq_dequant.cu)
 *   constexpr int kTokens = kThreads / 8;        (kernels/commvq_exact_logits.cu)
 *
 * A definition counts when it starts a line (file scope or a namespace's, as the kernels indent function bodies) and
 * its value is an integer expression: literals, + − * / % << >>, parentheses, and names the same file or a header it
 * includes defines. Files are read from the package's kernels/ folder (where NVRTC finds them too) once each, on the
 * first use of one of their constants; test/backend/cuda/kernel-constants.test.ts resolves every constant every launcher
 * asks for, so a renamed or deleted definition fails a CPU test, not a GPU run.
 *
 *   const K = kernelConstants('commvq_dequant', ['DQ_TOKENS']);
 *   ctx.launch(kernel, [Math.ceil(n / K.DQ_TOKENS), 1, 1], ...);
 */

/** One launcher module's request: these names of this file. */
export interface KernelConstantRequest {
  readonly file: string;
  readonly names: readonly string[];
}

const requests: KernelConstantRequest[] = [];
const sources = new Map<string, KernelSource>();

/**
 * The constants `names` of `file` (a module name such as `commvq_dequant` for kernels/commvq_dequant.cu, or a header
 * such as `commvq_bits_gemm.cuh`), each read on first use. An unknown name is a CommvqError at that use.
 */
export function kernelConstants<N extends string>(file: string, names: readonly N[]): Readonly<Record<N, number>> {
  requests.push({ file, names });
  const out = {} as Record<N, number>;
  for (const name of names) {
    Object.defineProperty(out, name, { enumerable: true, get: () => kernelSource(file).value(name) });
  }
  return out;
}

/** Every request made so far (one per launcher module loaded): what the CPU test checks. */
export function kernelConstantRequests(): readonly KernelConstantRequest[] {
  return requests;
}

/** The value of constant `name` of `file`, as `kernelConstants` reads it. */
export function kernelConstant(file: string, name: string): number {
  return kernelSource(file).value(name);
}

function kernelSource(file: string): KernelSource {
  const name = file.includes('.') ? file : `${file}.cu`;
  let source = sources.get(name);
  if (!source) {
    const path = join(packageRoot(), 'kernels', name);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      throw new CommvqError(`kernel source ${path} not found (a launcher reads its constants there)`, 'reinstall commvq');
    }
    source = new KernelSource(name, text, kernelSource);
    sources.set(name, source);
  }
  return source;
}

/** The constant definitions of one kernel source, evaluated on demand. */
export class KernelSource {
  private readonly definitions = new Map<string, string>();
  private readonly duplicates = new Set<string>();
  private readonly values = new Map<string, number>();
  private readonly includes: string[] = [];
  private readonly evaluating = new Set<string>();

  constructor(
    readonly name: string,
    text: string,
    private readonly open: (file: string) => KernelSource = () => {
      throw new CommvqError(`kernels/${name}: included files are not available here`);
    },
  ) {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/\/\/.*$/, '').trimEnd();
      const include = /^#include\s+"([^"]+)"/.exec(line);
      if (include) this.includes.push(include[1]!);
      const def = /^#define\s+([A-Za-z_]\w*)\s+(.+)$/.exec(line) ?? /^(?:static\s+)?constexpr\s+[\w\s]+?\s([A-Za-z_]\w*)\s*=\s*([^;]+);/.exec(line);
      if (!def) continue;
      const [, key, value] = def as unknown as [string, string, string];
      if (this.definitions.has(key) && this.definitions.get(key) !== value.trim()) this.duplicates.add(key);
      this.definitions.set(key, value.trim());
    }
  }

  /** The integer value of `name`, defined here or in an included header. */
  value(name: string): number {
    const known = this.values.get(name);
    if (known !== undefined) return known;
    const text = this.definitions.get(name);
    if (text === undefined) {
      for (const header of this.includes) {
        const source = this.open(header);
        if (source.defines(name)) return source.value(name);
      }
      throw new CommvqError(`kernels/${this.name} defines no constant ${name} (a launcher reads it)`, 'define it at file scope beside the kernel\'s header comment');
    }
    if (this.duplicates.has(name)) throw new CommvqError(`kernels/${this.name} defines ${name} twice with different values`);
    if (this.evaluating.has(name)) throw new CommvqError(`kernels/${this.name}: ${name} is defined in terms of itself`);
    this.evaluating.add(name);
    try {
      const v = evaluate(text, (id) => this.value(id), `kernels/${this.name}: ${name} = ${text}`);
      this.values.set(name, v);
      return v;
    } finally {
      this.evaluating.delete(name);
    }
  }

  private defines(name: string): boolean {
    return this.definitions.has(name) || this.includes.some((h) => this.open(h).defines(name));
  }
}

/** Evaluates an integer C expression (C's truncating division); names are resolved by `lookup`. */
function evaluate(text: string, lookup: (name: string) => number, what: string): number {
  const tokens = text.match(/0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*|[A-Za-z_]\w*|<<|>>|[-+*/%()]|\S/g) ?? [];
  let at = 0;
  const fail = (why: string): never => {
    throw new CommvqError(`${what}: ${why} (launch constants are integer expressions)`);
  };
  const primary = (): number => {
    const t = tokens[at++];
    if (t === undefined) return fail('unexpected end');
    if (t === '(') {
      const v = shift();
      if (tokens[at++] !== ')') fail('missing )');
      return v;
    }
    if (t === '-') return -primary();
    if (t === '+') return primary();
    if (/^(0[xX][0-9a-fA-F]+|\d+)[uUlL]*$/.test(t)) return Number(t.replace(/[uUlL]+$/, ''));
    if (/^[A-Za-z_]\w*$/.test(t)) return lookup(t);
    return fail(`cannot read '${t}'`);
  };
  const product = (): number => {
    let v = primary();
    for (let op = tokens[at]; op === '*' || op === '/' || op === '%'; op = tokens[at]) {
      at++;
      const r = primary();
      if (op !== '*' && r === 0) fail('division by zero');
      v = op === '*' ? v * r : op === '/' ? Math.trunc(v / r) : v % r;
    }
    return v;
  };
  const sum = (): number => {
    let v = product();
    for (let op = tokens[at]; op === '+' || op === '-'; op = tokens[at]) {
      at++;
      v = op === '+' ? v + product() : v - product();
    }
    return v;
  };
  const shift = (): number => {
    let v = sum();
    for (let op = tokens[at]; op === '<<' || op === '>>'; op = tokens[at]) {
      at++;
      v = op === '<<' ? v * 2 ** sum() : Math.trunc(v / 2 ** sum());
    }
    return v;
  };
  const v = shift();
  if (at !== tokens.length) fail(`cannot read '${tokens[at]}'`);
  if (!Number.isSafeInteger(v)) fail('not an integer');
  return v;
}
