import koffi from 'koffi';
import { CommvqError } from '../../errors.js';
import type { CudaContext } from './context.js';
import type { DeviceBlock } from './kernels.js';
import { asBigInt, candidates, declare, loadFirst, type Library, type NativeFunction } from './native.js';

/**
 * bf16 GEMM for `linear` through cuBLASLt, f32 accumulation (CUBLAS_COMPUTE_32F).
 *
 * Layout: cuBLASLt is column-major. Our row-major x [T, in] is, read column-major, the matrix xᶜ [in, T] (ld = in);
 * the weight W [out, in] is Wᶜ [in, out] (ld = in); the wanted y [T, out] row-major is yᶜ [out, T] (ld = out).
 * y = x·Wᵀ ⇔ yᶜ = (Wᶜ)ᵀ·xᶜ, so A = W with TRANSA = T (stored k×m = in×out), B = x with TRANSB = N (k×n = in×T),
 * D = y (m×n = out×T): m = out, n = T, k = in.
 *
 * A plan (descriptors + the heuristic's algorithm) is cached per (T, in, out); the 32 MiB workspace comes from the
 * context's allocator so that graph capture never needs cuBLAS to allocate.
 */

// Enum values from cublasLt.h / library_types.h / cublas_api.h.
const CUBLAS_COMPUTE_32F = 68;
const CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
const CUDA_R_32F = 0;
const CUDA_R_16BF = 14;
const CUBLAS_OP_N = 0;
const CUBLAS_OP_T = 1;
const CUBLASLT_MATMUL_DESC_TRANSA = 3;
const CUBLASLT_MATMUL_DESC_TRANSB = 4;
const CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;
const HEURISTIC_RESULT_BYTES = 96; // cublasLtMatmulHeuristicResult_t: algo[64], workspaceSize, state, waves, 4 ints
const WORKSPACE_BYTES = 32 << 20;
const MAX_PLANS = 512;

/**
 * One f32-output GEMM of `CublasLt.gemm`, row-major: d [M, N] = op(a)·op(b) (+ d with accumulate), op(a) = a [M, K]
 * or aᵀ of a [K, M] (transA), op(b) = b [K, N] or bᵀ of b [N, K] (transB). `input` is the dtype of a and b: 'bf16'
 * (bf16 tensor cores) or 'f32' (TF32 tensor cores: inputs rounded to 10 mantissa bits); accumulation is f32.
 */
export interface GemmShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  input: 'bf16' | 'f32';
  accumulate: boolean;
}

interface Api {
  cublasLtCreate: NativeFunction;
  cublasLtDestroy: NativeFunction;
  cublasLtGetStatusName: NativeFunction;
  cublasLtMatmulDescCreate: NativeFunction;
  cublasLtMatmulDescDestroy: NativeFunction;
  cublasLtMatmulDescSetAttribute: NativeFunction;
  cublasLtMatrixLayoutCreate: NativeFunction;
  cublasLtMatrixLayoutDestroy: NativeFunction;
  cublasLtMatmulPreferenceCreate: NativeFunction;
  cublasLtMatmulPreferenceDestroy: NativeFunction;
  cublasLtMatmulPreferenceSetAttribute: NativeFunction;
  cublasLtMatmulAlgoGetHeuristic: NativeFunction;
  cublasLtMatmul: NativeFunction;
}

function bind(lib: Library): Api {
  const d = (proto: string): NativeFunction => declare(lib, proto);
  return {
    cublasLtCreate: d('int cublasLtCreate(_Out_ void **handle)'),
    cublasLtDestroy: d('int cublasLtDestroy(void *handle)'),
    cublasLtGetStatusName: d('const char *cublasLtGetStatusName(int status)'),
    cublasLtMatmulDescCreate: d('int cublasLtMatmulDescCreate(_Out_ void **desc, int computeType, int scaleType)'),
    cublasLtMatmulDescDestroy: d('int cublasLtMatmulDescDestroy(void *desc)'),
    cublasLtMatmulDescSetAttribute: d('int cublasLtMatmulDescSetAttribute(void *desc, int attr, const void *buf, size_t size)'),
    cublasLtMatrixLayoutCreate: d(
      'int cublasLtMatrixLayoutCreate(_Out_ void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld)',
    ),
    cublasLtMatrixLayoutDestroy: d('int cublasLtMatrixLayoutDestroy(void *layout)'),
    cublasLtMatmulPreferenceCreate: d('int cublasLtMatmulPreferenceCreate(_Out_ void **pref)'),
    cublasLtMatmulPreferenceDestroy: d('int cublasLtMatmulPreferenceDestroy(void *pref)'),
    cublasLtMatmulPreferenceSetAttribute: d(
      'int cublasLtMatmulPreferenceSetAttribute(void *pref, int attr, const void *buf, size_t size)',
    ),
    cublasLtMatmulAlgoGetHeuristic: d(
      'int cublasLtMatmulAlgoGetHeuristic(void *handle, void *desc, void *a, void *b, void *c, void *d, void *pref, ' +
        'int requested, void *results, _Out_ int *count)',
    ),
    cublasLtMatmul: d(
      'int cublasLtMatmul(void *handle, void *desc, const void *alpha, void *a, void *adesc, void *b, void *bdesc, ' +
        'const void *beta, void *c, void *cdesc, void *d, void *ddesc, const void *algo, void *workspace, ' +
        'size_t workspaceBytes, void *stream)',
    ),
  };
}

interface Plan {
  desc: bigint;
  layouts: [bigint, bigint, bigint];
  algo: Buffer;
}

/** A column-major matrix layout: element type, rows, columns, leading dimension. */
type LayoutSpec = [type: number, rows: number, cols: number, ld: number];

/** What a plan is built from: compute type, cuBLAS's ops on A and B, and the layouts of A, B and D (= C). */
interface PlanSpec {
  compute: number;
  opA: number;
  opB: number;
  a: LayoutSpec;
  b: LayoutSpec;
  d: LayoutSpec;
}

export class CublasLt {
  private readonly api: Api;
  private readonly handle: bigint;
  private readonly workspace: DeviceBlock;
  private readonly plans = new Map<string, Plan | null>();
  // alpha = 1, beta = 0 as f32 (the scale type), read by the host at each call
  private readonly scalars = Buffer.from(new Float32Array([1, 0]).buffer);
  private readonly alpha = koffi.address(this.scalars);
  private readonly beta = this.alpha + 4n;
  // beta = 1 for gemm's accumulate (d += a·b)
  private readonly ones = Buffer.from(new Float32Array([1, 1]).buffer);
  private readonly betaOne = koffi.address(this.ones) + 4n;

  /** cuBLASLt for `ctx`, or null when the library is not installed (the backend then uses its fallback GEMM). */
  static tryCreate(ctx: CudaContext): CublasLt | null {
    const lib = loadFirst(candidates('libcublasLt', [13, 12]));
    return lib ? new CublasLt(ctx, bind(lib)) : null;
  }

  private constructor(
    private readonly ctx: CudaContext,
    api: Api,
  ) {
    this.api = api;
    const h: [unknown] = [null];
    this.check(api.cublasLtCreate(h), 'cublasLtCreate');
    this.handle = asBigInt(h[0]);
    this.workspace = ctx.alloc(WORKSPACE_BYTES);
  }

  /**
   * y [T, out] = x [T, in] · w [out, in]ᵀ, all bf16 row-major, enqueued on the context's stream. False when cuBLASLt
   * has no algorithm for this shape (the caller then uses another GEMM).
   */
  linear(y: bigint, x: bigint, w: bigint, T: number, inF: number, outF: number): boolean {
    const plan = this.plan(T, inF, outF);
    if (!plan) return false;
    const [a, b, d] = plan.layouts;
    this.check(
      this.api.cublasLtMatmul(
        this.handle, plan.desc, this.alpha, w, a, x, b, this.beta, y, d, y, d, plan.algo,
        this.workspace.ptr, WORKSPACE_BYTES, this.ctx.stream,
      ),
      `cublasLtMatmul(T=${T}, in=${inF}, out=${outF})`,
    );
    return true;
  }

  /**
   * The f32-output GEMM of `g` (see GemmShape) on device addresses d, a, b, enqueued on the context's stream. False
   * when cuBLASLt has no algorithm for the shape (the caller then uses another GEMM).
   *
   * Row-major to column-major: the row-major d [M, N] is the column-major dᵀ [N, M], and dᵀ = op(b)ᵀ·op(a)ᵀ, so
   * cuBLAS's A is our b (stored N×K, ld N, op N; or with transB stored K×N, ld K, op T), its B is our a (stored K×M,
   * ld K, op N; or with transA stored M×K, ld M, op T), and D = C is N×M with ld N: m = N, n = M, k = K.
   *
   *   // dW [out, in] += dYᵀ·X with dY [T, out], X [T, in], both bf16
   *   blas.gemm(dW, dY, X, { M: out, N: in, K: T, transA: true, transB: false, input: 'bf16', accumulate: true });
   */
  gemm(d: bigint, a: bigint, b: bigint, g: GemmShape): boolean {
    const plan = this.gemmPlan(g);
    if (!plan) return false;
    const [pa, pb, pd] = plan.layouts;
    this.check(
      this.api.cublasLtMatmul(
        this.handle, plan.desc, this.alpha, b, pa, a, pb, g.accumulate ? this.betaOne : this.beta, d, pd, d, pd,
        plan.algo, this.workspace.ptr, WORKSPACE_BYTES, this.ctx.stream,
      ),
      `cublasLtMatmul(gemm M=${g.M}, N=${g.N}, K=${g.K}, ${g.input})`,
    );
    return true;
  }

  private gemmPlan(g: GemmShape): Plan | null {
    const bf16 = g.input === 'bf16';
    const inType = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const { M, N, K } = g;
    return this.cachedPlan(`gemm:${M},${N},${K},${+g.transA},${+g.transB},${g.input}`, () => ({ // beta is a call argument
      compute: bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32,
      opA: g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, // cuBLAS's A is our b
      opB: g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, // cuBLAS's B is our a
      a: g.transB ? [inType, K, N, K] : [inType, N, K, N],
      b: g.transA ? [inType, M, K, M] : [inType, K, M, K],
      d: [CUDA_R_32F, N, M, N],
    }));
  }

  dispose(): void {
    for (const plan of this.plans.values()) if (plan) this.destroyPlan(plan);
    this.plans.clear();
    this.api.cublasLtDestroy(this.handle);
    this.workspace.free();
  }

  /** linear's plan: cuBLAS's A is w stored [out, in] (op T), its B is x [T, in] (op N), D = y [T, out], all bf16. */
  private plan(T: number, inF: number, outF: number): Plan | null {
    return this.cachedPlan(`${T},${inF},${outF}`, () => ({
      compute: CUBLAS_COMPUTE_32F,
      opA: CUBLAS_OP_T,
      opB: CUBLAS_OP_N,
      a: [CUDA_R_16BF, inF, outF, inF],
      b: [CUDA_R_16BF, inF, T, inF],
      d: [CUDA_R_16BF, outF, T, outF],
    }));
  }

  /** The plan under `key`, built on first use (null, also cached: no algorithm for the shape); at most MAX_PLANS. */
  private cachedPlan(key: string, spec: () => PlanSpec): Plan | null {
    const cached = this.plans.get(key);
    if (cached !== undefined) return cached;
    if (this.plans.size >= MAX_PLANS) {
      for (const plan of this.plans.values()) if (plan) this.destroyPlan(plan);
      this.plans.clear();
    }
    const plan = this.makePlan(spec());
    this.plans.set(key, plan);
    return plan;
  }

  /** A matmul descriptor, its three layouts and cuBLASLt's first heuristic algorithm; null when it has none. */
  private makePlan(spec: PlanSpec): Plan | null {
    const { api } = this;
    const out: [unknown] = [null];
    this.check(api.cublasLtMatmulDescCreate(out, spec.compute, CUDA_R_32F), 'cublasLtMatmulDescCreate');
    const desc = asBigInt(out[0]);
    const int = (v: number): Buffer => Buffer.from(new Int32Array([v]).buffer);
    this.check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, int(spec.opA), 4), 'set TRANSA');
    this.check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, int(spec.opB), 4), 'set TRANSB');
    const layout = ([type, rows, cols, ld]: LayoutSpec): bigint => {
      const l: [unknown] = [null];
      this.check(api.cublasLtMatrixLayoutCreate(l, type, rows, cols, ld), 'cublasLtMatrixLayoutCreate');
      return asBigInt(l[0]);
    };
    const layouts: [bigint, bigint, bigint] = [layout(spec.a), layout(spec.b), layout(spec.d)];

    const p: [unknown] = [null];
    this.check(api.cublasLtMatmulPreferenceCreate(p), 'cublasLtMatmulPreferenceCreate');
    const pref = asBigInt(p[0]);
    const algo = Buffer.alloc(HEURISTIC_RESULT_BYTES);
    const count = [0];
    try {
      const ws = Buffer.alloc(8);
      ws.writeBigUInt64LE(BigInt(WORKSPACE_BYTES));
      this.check(
        api.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws, 8),
        'set MAX_WORKSPACE_BYTES',
      );
      const [a, b, d] = layouts;
      // NOT_SUPPORTED (or no result) means no algorithm for this shape: not an error, the caller falls back.
      api.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, a, b, d, d, pref, 1, algo, count);
    } finally {
      api.cublasLtMatmulPreferenceDestroy(pref);
    }
    const plan = { desc, layouts, algo };
    if (count[0] === 0 || algo.readInt32LE(72) !== 0) {
      this.destroyPlan(plan);
      return null;
    }
    return plan;
  }

  private destroyPlan(plan: Plan): void {
    this.api.cublasLtMatmulDescDestroy(plan.desc);
    for (const l of plan.layouts) this.api.cublasLtMatrixLayoutDestroy(l);
  }

  private check(rc: number, call: string): void {
    if (rc === 0) return;
    const name = this.api.cublasLtGetStatusName(rc) as string;
    throw new CommvqError(`cuBLASLt call ${call} failed: ${name}`);
  }
}
