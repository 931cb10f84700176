/**
 * The environment of one process `commvq launch` starts, in torchrun's conventions: global RANK = node rank ·
 * GPUs per node + local rank, WORLD_SIZE = nodes · GPUs per node, one GPU visible (CUDA_VISIBLE_DEVICES, so every
 * rank opens its device 0), and NVLink multicast off (NCCL_NVLS_ENABLE=0: a program using multicast can take a
 * shared host's GPUs out of service).
 *
 *   rankEnv({ gpus: [4, 5], localRank: 1, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: 29500 })
 *   // { CUDA_VISIBLE_DEVICES: '5', RANK: '1', LOCAL_RANK: '1', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', ... }
 */
export interface JobLayout {
  /** this node's GPU ordinals, one rank each */
  gpus: number[];
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** rendezvous deadline passed on to the ranks (COMMVQ_RDZV_TIMEOUT_S) */
  timeoutS?: number;
}

export function rankEnv(layout: JobLayout & { localRank: number }): Record<string, string> {
  const perNode = layout.gpus.length;
  return {
    CUDA_VISIBLE_DEVICES: String(layout.gpus[layout.localRank]),
    RANK: String(layout.nodeRank * perNode + layout.localRank),
    LOCAL_RANK: String(layout.localRank),
    WORLD_SIZE: String(layout.nnodes * perNode),
    LOCAL_WORLD_SIZE: String(perNode),
    GROUP_RANK: String(layout.nodeRank),
    MASTER_ADDR: layout.masterAddr,
    MASTER_PORT: String(layout.masterPort),
    NCCL_NVLS_ENABLE: '0',
    ...(layout.timeoutS === undefined ? {} : { COMMVQ_RDZV_TIMEOUT_S: String(layout.timeoutS) }),
  };
}
