import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { CommvqError } from '../../errors.js';
import { asBigInt, candidates, declare, loadFirst, type Library, type NativeFunction } from './native.js';

/**
 * koffi bindings to NCCL (`libnccl.so.2`), the collectives engine this field uses (vLLM loads it the same way,
 * through an FFI wrapper rather than a compiled extension). Only what data parallelism needs: a unique id made by
 * rank 0 and handed to the others (over our TCP rendezvous), a communicator per rank, in-place sum all-reduce of f32,
 * f64 and bf16 buffers enqueued on a CUDA stream, and teardown. Every call returns an ncclResult_t that `check` turns
 * into a CommvqError naming the call and NCCL's message.
 *
 * Where the library is looked for, in order: $COMMVQ_NCCL_LIB (only there, when set); the loader's search path and
 * the CUDA toolkit folders; beside PyTorch's CUDA libraries, `<site-packages>/nvidia/nccl/lib/libnccl.so.2`, for the
 * python3 on PATH (asked for site.getsitepackages(), never importing torch) and the usual site-packages globs.
 */

// Enum values from nccl.h (stable since NCCL 2.10, which added bf16).
export const NCCL_UNIQUE_ID_BYTES = 128;
export const ncclDataType = { f32: 7, f64: 8, bf16: 9 } as const;
const ncclSum = 0;

export interface NcclApi {
  readonly path: string;
  ncclGetUniqueId: NativeFunction;
  ncclCommInitRank: NativeFunction;
  ncclAllReduce: NativeFunction;
  ncclCommDestroy: NativeFunction;
  ncclGetErrorString: NativeFunction;
  ncclGetVersion: NativeFunction;
}

let uniqueIdType: unknown; // koffi knows a struct name once per process

function bind(lib: Library, path: string): NcclApi {
  uniqueIdType ??= koffi.struct('ncclUniqueId', { internal: koffi.array('uint8_t', NCCL_UNIQUE_ID_BYTES, 'Typed') });
  const d = (proto: string): NativeFunction => declare(lib, proto);
  return {
    path,
    ncclGetUniqueId: d('int ncclGetUniqueId(void *uniqueId)'),
    ncclCommInitRank: d('int ncclCommInitRank(_Out_ void **comm, int nranks, ncclUniqueId commId, int rank)'),
    ncclAllReduce: d('int ncclAllReduce(uint64_t sendbuff, uint64_t recvbuff, size_t count, int datatype, int op, void *comm, void *stream)'),
    ncclCommDestroy: d('int ncclCommDestroy(void *comm)'),
    ncclGetErrorString: d('const char *ncclGetErrorString(int result)'),
    ncclGetVersion: d('int ncclGetVersion(_Out_ int *version)'),
  };
}

/** The places libnccl.so.2 is looked for, in order (see the file's comment). */
export function ncclCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.COMMVQ_NCCL_LIB) return [env.COMMVQ_NCCL_LIB];
  return [...candidates('libnccl', [2]), ...sitePackages().map((d) => join(d, 'nvidia', 'nccl', 'lib', 'libnccl.so.2')).filter((p) => existsSync(p))];
}

let loaded: NcclApi | undefined;

/** NCCL, loaded once; a CommvqError saying where it was looked for when it is not found. */
export function loadNccl(env: NodeJS.ProcessEnv = process.env): NcclApi {
  if (loaded) return loaded;
  const tried = ncclCandidates(env);
  const errors: string[] = [];
  for (const path of tried) {
    const lib = loadFirst([path], errors);
    if (lib) return (loaded = bind(lib, path));
  }
  const where = env.COMMVQ_NCCL_LIB ? `COMMVQ_NCCL_LIB=${env.COMMVQ_NCCL_LIB} (${errors[0] ?? 'not loadable'})` : 'the loader\'s paths, the CUDA toolkit and python3\'s site-packages (nvidia/nccl/lib)';
  throw new CommvqError(`NCCL not found: no libnccl.so.2 in ${where}`, 'install it (pip install nvidia-nccl-cu12, or the libnccl2 package) or set COMMVQ_NCCL_LIB to its path');
}

/** Throws a CommvqError for a failed NCCL call, with NCCL's own message. */
export function checkNccl(api: NcclApi, result: number, call: string): void {
  if (result !== 0) throw new CommvqError(`${call} failed: NCCL error ${result} (${String(api.ncclGetErrorString(result))})`);
}

/** A fresh 128-byte ncclUniqueId (rank 0 makes it; every rank passes the same bytes to `initRank`). */
export function ncclUniqueId(api: NcclApi): Uint8Array {
  const id = Buffer.alloc(NCCL_UNIQUE_ID_BYTES);
  checkNccl(api, api.ncclGetUniqueId(id), 'ncclGetUniqueId');
  return new Uint8Array(id);
}

/** This rank's communicator (blocks until all `worldSize` ranks have called it with the same id). */
export function ncclInitRank(api: NcclApi, id: Uint8Array, worldSize: number, rank: number): bigint {
  const comm: [unknown] = [null];
  checkNccl(api, api.ncclCommInitRank(comm, worldSize, { internal: id }, rank), `ncclCommInitRank(rank ${rank} of ${worldSize})`);
  return asBigInt(comm[0]);
}

/** In-place sum over all ranks of `count` elements at device address `ptr`, enqueued on `stream`. */
export function ncclAllReduceSum(api: NcclApi, comm: bigint, ptr: bigint, count: number, dtype: keyof typeof ncclDataType, stream: bigint): void {
  checkNccl(api, api.ncclAllReduce(ptr, ptr, count, ncclDataType[dtype], ncclSum, comm, stream), `ncclAllReduce(${count} ${dtype})`);
}

/** site-packages folders of the python3 on PATH (asked, never importing torch), plus the usual globs. */
function sitePackages(): string[] {
  const out: string[] = [];
  const r = spawnSync('python3', ['-c', 'import site; print("\\n".join(site.getsitepackages() + [site.getusersitepackages()]))'], { encoding: 'utf8', timeout: 5000 });
  if (r.status === 0) out.push(...r.stdout.split('\n').filter(Boolean));
  for (const root of ['/usr/local/lib', '/usr/lib', join(homedir(), '.local', 'lib')]) {
    let names: string[] = [];
    try {
      names = readdirSync(root).filter((n) => /^python3/.test(n));
    } catch {
      continue;
    }
    for (const n of names) out.push(join(root, n, 'site-packages'), join(root, n, 'dist-packages'));
  }
  return [...new Set(out)];
}
