import { CommvqError } from '../errors.js';
import { DEFAULT_RENDEZVOUS_TIMEOUT_MS } from './rendezvous.js';

/**
 * Where this process stands in a job, read from torchrun's environment variables (which `commvq launch` sets):
 * RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; COMMVQ_RDZV_TIMEOUT_S sets the
 * rendezvous deadline. A process started without them is rank 0 of a world of one.
 *
 *   distEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' }).rank  // 1
 */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
}

export function distEnv(env: NodeJS.ProcessEnv = process.env): DistEnv {
  const int = (name: string, fallback: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new CommvqError(`${name}=${raw}: not an integer ≥ ${min}`, 'start the job with commvq launch, or unset it');
    return n;
  };
  const worldSize = int('WORLD_SIZE', 1, 1);
  const rank = int('RANK', 0, 0);
  if (rank >= worldSize) throw new CommvqError(`RANK=${rank} is outside WORLD_SIZE=${worldSize}`);
  const timeoutS = Number(env.COMMVQ_RDZV_TIMEOUT_S ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS / 1000);
  if (!(timeoutS > 0)) throw new CommvqError(`COMMVQ_RDZV_TIMEOUT_S=${env.COMMVQ_RDZV_TIMEOUT_S}: not a positive number of seconds`);
  if (worldSize > 1 && (!env.MASTER_ADDR || !env.MASTER_PORT)) throw new CommvqError(`WORLD_SIZE=${worldSize} without MASTER_ADDR and MASTER_PORT`, 'start the job with commvq launch');
  return {
    rank,
    worldSize,
    localRank: int('LOCAL_RANK', rank, 0),
    localWorldSize: int('LOCAL_WORLD_SIZE', worldSize, 1),
    masterAddr: env.MASTER_ADDR ?? '127.0.0.1',
    masterPort: int('MASTER_PORT', 29500, 1),
    timeoutMs: timeoutS * 1000,
  };
}
