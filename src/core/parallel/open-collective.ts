import type { Backend } from '../backend/backend.js';
import { SingleProcess, type Collective } from './collective.js';
import type { DistEnv } from './dist-env.js';
import { Rendezvous } from './rendezvous.js';
import { TcpCollective } from './tcp-collective.js';

/**
 * The collective of this process's job (dist-env.ts): `SingleProcess` at world size 1 (no rendezvous, no NCCL),
 * else the rendezvous joined and NCCL on a CUDA backend, or the TCP collective on the CPU.
 *
 *   const collective = await openCollective(distEnv(), backend);
 */
export async function openCollective(env: DistEnv, backend: Backend): Promise<Collective> {
  if (env.worldSize === 1) return new SingleProcess();
  const rdzv = await Rendezvous.join(env);
  try {
    if (!backend.device.startsWith('cuda')) return new TcpCollective(rdzv, backend);
    const [{ NcclCollective }, { CudaBackend }] = await Promise.all([import('./nccl-collective.js'), import('../backend/cuda/cuda-backend.js')]);
    if (!(backend instanceof CudaBackend)) throw new Error(`openCollective: a ${backend.device} backend that is not a CudaBackend`);
    return await NcclCollective.create(rdzv, backend);
  } catch (e) {
    rdzv.close();
    throw e;
  }
}
