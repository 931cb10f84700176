import type { Shard } from '../eval/shard.js';
import type { DistEnv } from './dist-env.js';
import { Rendezvous } from './rendezvous.js';

/**
 * An eval split over the ranks of `commvq launch`: rank r of W runs shard r/W into the shared --out folder, then
 * `finish` waits for every shard (as long as the other ranks stay connected) and tells each rank whether all of them
 * completed, so rank 0 merges only a whole run. Undefined for a process started alone (world size 1).
 *
 *   const job = await shardJob(distEnv());
 *   const shard = job?.shard ?? parseShard(flags.shard);
 *   if (job && (await job.finish(result.outcome === 'complete')) && job.rank === 0) await mergeEvalRuns({ dirs: [out] });
 */
export interface ShardJob {
  rank: number;
  shard: Shard;
  /** every rank calls it once its shard is done; true on every rank when all shards completed */
  finish(complete: boolean): Promise<boolean>;
  close(): void;
}

export async function shardJob(env: DistEnv): Promise<ShardJob | undefined> {
  if (env.worldSize === 1) return undefined;
  const rdzv = await Rendezvous.join(env);
  return {
    rank: env.rank,
    shard: { index: env.rank, count: env.worldSize },
    async finish(complete: boolean): Promise<boolean> {
      const all = await rdzv.exchange(Buffer.from([complete ? 1 : 0]), (parts) => Buffer.from([parts.every((p) => p[0] === 1) ? 1 : 0]), 'the end of every shard', Infinity);
      return all[0] === 1;
    },
    close: () => rdzv.close(),
  };
}
